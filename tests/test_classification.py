"""Classification and attribute heads, models and tasks; distillation moves the student toward the teacher."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mobiletasks import create_model, model_summary
from mobiletasks.data.collate import classification_collate
from mobiletasks.heads.classification import AttributeHead, ClassificationHead
from mobiletasks.preprocessing import IMAGENET_MEAN
from mobiletasks.tasks.classification import AttributeTask, ClassificationTask
from mobiletasks.tasks.distill import binary_soft_loss, load_teacher, softmax_soft_loss

SMALL = {"width_mult": 0.25}


def test_heads_pool_and_prior() -> None:
    x = torch.rand(2, 8, 5, 5)
    head = ClassificationHead(8, 3, pool="max").eval()
    assert torch.allclose(head(x), head.fc(x.amax(dim=(2, 3))))
    attr = AttributeHead(8, 4, prior=0.2)
    assert torch.allclose(attr.fc.bias, torch.full((4,), torch.tensor(0.2).logit().item()))
    with pytest.raises(ValueError, match="prior must be 4 rates"):
        AttributeHead(8, 4, prior=[0.5, 1.0])
    with pytest.raises(ValueError, match="pool must be one of"):
        ClassificationHead(8, 3, pool="mean")


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "torchvision/resnet18", "timm/mobilenetv1_100"])
def test_heads_on_any_backbone(backbone: str) -> None:
    pytest.importorskip("timm") if backbone.startswith("timm") else None
    model = create_model("attribute_classifier", backbone=backbone, num_classes=7).eval()
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 7)
    assert model.head.fc.in_features == model.backbone.feature_info[-1].channels


def test_classifier_matches_the_plain_mobilenet() -> None:
    plain = create_model("mobilenet_v1", num_classes=120, width_mult=0.75)
    ours = create_model("classifier", num_classes=120, backbone_kwargs={"width_mult": 0.75})
    # same layers under other names: loading the backbone's weights makes them compute the same function
    state = {f"backbone.{k}": v for k, v in plain.state_dict().items() if k.startswith("features.")}
    state |= {"head.fc.weight": plain.classifier[1].weight, "head.fc.bias": plain.classifier[1].bias}
    ours.load_state_dict(state)
    x = torch.rand(2, 3, 96, 96)
    assert torch.allclose(plain.eval()(x), ours.eval()(x), atol=1e-5)
    assert model_summary(plain, 96).macs == model_summary(ours, 96).macs


def test_fine_tuning_keeps_a_fresh_head(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(create_model("classifier", num_classes=10, backbone_kwargs=SMALL).state_dict(), path)
    with pytest.warns(UserWarning, match="class head weights not loaded"):
        model = create_model("classifier", num_classes=3, backbone_kwargs=SMALL, pretrained=path)
    assert model.head.fc.out_features == 3


def _teacher_file(tmp_path: Path, num_classes: int, scale: float = 30.0) -> Path:
    """A random teacher whose outputs are far from uniform (scaled head), as a state-dict file."""
    torch.manual_seed(1)
    teacher = create_model("classifier", num_classes=num_classes, backbone_kwargs=SMALL)
    with torch.no_grad():
        teacher.head.fc.weight.mul_(scale)
        teacher.head.fc.bias.normal_(0, 2)
    path = tmp_path / "teacher.pth"
    torch.save(teacher.state_dict(), path)
    return path


def _loader(num: int = 8, labels: torch.Tensor | None = None) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(num, 3, 48, 48, generator=g)
    samples = [
        (images[i], {"file_name": f"{i}.jpg", "index": i} | ({} if labels is None else {"labels": labels[i]}))
        for i in range(num)
    ]
    return DataLoader(samples, batch_size=num, collate_fn=classification_collate)


def _distance(task: ClassificationTask, loader: DataLoader) -> float:
    images, _ = next(iter(loader))
    task.eval()
    with torch.no_grad():
        distance = float(task.soft_loss(task(images), task.teacher_logits(images)))
    task.train()
    return distance


def _fit(task: L.LightningModule, loader: DataLoader, tmp_path: Path, steps: int) -> None:
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, train_dataloaders=loader)


@pytest.mark.parametrize("task_class", [ClassificationTask, AttributeTask])
def test_distillation_moves_the_student_toward_the_teacher(task_class: type, tmp_path: Path) -> None:
    """alpha=0: the teacher alone, on unlabelled images (no ``labels`` in the batches)."""
    weights = _teacher_file(tmp_path, 5)
    kwargs = {"backbone_kwargs": SMALL}
    task = task_class(
        num_classes=5,
        model_kwargs=SMALL,
        teacher="classifier",
        teacher_weights=str(weights),
        teacher_kwargs=kwargs,
        alpha=0.0,
        temperature=2.0,
        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
        schedule="constant",
    )
    task.setup("fit")
    loader = _loader()
    before = _distance(task, loader)
    _fit(task, loader, tmp_path, steps=40)
    after = _distance(task, loader)
    assert after < 0.5 * before, (before, after)
    if task_class is ClassificationTask:  # the student now ranks the classes as the teacher does
        images, _ = next(iter(loader))
        with torch.no_grad():
            agree = (task.eval()(images).argmax(1) == task.teacher_logits(images).argmax(1)).float().mean()
        assert agree >= 0.75
    assert not any(k.startswith("teacher") for k in task.state_dict())  # checkpoints carry the student only


def test_the_model_and_the_teacher_get_the_images_in_0_1(tmp_path: Path) -> None:
    """The tasks no longer normalize: their models do, with the statistics ``model_kwargs`` give them."""
    half = (0.5, 0.5, 0.5)
    task = ClassificationTask(
        num_classes=5,
        model_kwargs={**SMALL, "image_mean": half, "image_std": half},
        teacher="classifier",
        teacher_weights=str(_teacher_file(tmp_path, 5)),
        teacher_kwargs={"backbone_kwargs": SMALL},
    )
    task.setup("fit")
    assert task.teacher is not None and "mean" not in task.hparams
    assert (task.model.image_mean, task.model.image_std, task.teacher.image_mean) == (half, half, IMAGENET_MEAN)
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(task.eval()(x), task.model(x))
        assert torch.equal(task.teacher_logits(x), task.teacher(x))


def test_soft_losses_are_zero_at_the_teacher_and_match_their_formulas() -> None:
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    assert softmax_soft_loss(t, t, 3.0).abs() < 1e-6 and binary_soft_loss(t, t, 3.0).abs() < 1e-6
    p, q = (t / 3).softmax(1), (s / 3).log_softmax(1)
    expected = (p * (p.log() - q)).sum(1).mean() * 9
    assert torch.allclose(softmax_soft_loss(s, t, 3.0), expected, atol=1e-6)
    # the binary KL has the gradient of the plain cross-entropy against the teacher's probabilities
    s1 = s.clone().requires_grad_()
    binary_soft_loss(s1, t, 2.0).backward()
    s2 = s.clone().requires_grad_()
    (F.binary_cross_entropy_with_logits(s2 / 2, torch.sigmoid(t / 2)) * 4).backward()
    assert s1.grad is not None and s2.grad is not None and torch.allclose(s1.grad, s2.grad, atol=1e-6)


def test_hard_and_soft_losses_mix_by_alpha(tmp_path: Path) -> None:
    weights = _teacher_file(tmp_path, 4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    common = {"num_classes": 4, "model_kwargs": SMALL, "teacher_kwargs": {"backbone_kwargs": SMALL}}
    task = ClassificationTask(**common, teacher="classifier", teacher_weights=str(weights), alpha=0.3).eval()
    task.setup("fit")
    images, targets = next(iter(_loader(labels=labels)))
    logits = task(images)
    hard, soft = task.hard_loss(logits, labels), task.soft_loss(logits, task.teacher_logits(images))
    assert torch.allclose(task.training_loss((images, targets))[0], 0.3 * hard + 0.7 * soft)
    no_labels = next(iter(_loader()))
    with pytest.raises(ValueError, match="has no labels"):
        task.training_loss(no_labels)


def test_teacher_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no weights: set teacher_weights"):
        load_teacher("torchvision/resnet18", num_classes=5)
    with pytest.raises(ValueError, match="gives 5 outputs but the student has num_classes=3"):
        load_teacher("classifier", _teacher_file(tmp_path, 5), {"backbone_kwargs": SMALL, "num_classes": 5}, 3)
    with pytest.raises(FileNotFoundError, match=r"teacher checkpoint .*missing\.ckpt does not exist"):
        load_teacher(str(tmp_path / "missing.ckpt"), num_classes=3)
    bad = tmp_path / "detector.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"loss": "focal"}}, bad)
    with pytest.raises(ValueError, match="not the checkpoint of a mobiletasks ClassificationTask"):
        load_teacher(str(bad), num_classes=3)
    detector = tmp_path / "ssd.ckpt"
    hp = {"model": "ssdlite_mobilenet_v1", "num_classes": 3, "model_kwargs": {"width_mult": 0.25}}
    detector_model = create_model("ssdlite_mobilenet_v1", num_classes=3, width_mult=0.25)
    state = {f"model.{k}": v for k, v in detector_model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hp}, detector)
    with pytest.raises(ValueError, match="does not return class logits"):
        load_teacher(str(detector), num_classes=3)
    with pytest.raises(ValueError, match="alpha=0 trains from the teacher alone"):
        ClassificationTask(num_classes=3, alpha=0.0)


def test_teacher_from_a_task_checkpoint(tmp_path: Path) -> None:
    labels = torch.tensor([[0, 1, 1], [1, 0, 0]] * 4, dtype=torch.float32)
    task = AttributeTask(num_classes=3, model="attribute_classifier", model_kwargs={"backbone_kwargs": SMALL})
    _fit(task, _loader(labels=labels), tmp_path, steps=2)
    (last,) = tmp_path.rglob("*.ckpt")  # Lightning's default checkpoint of the last epoch
    teacher = load_teacher(str(last), num_classes=3)
    x = torch.rand(2, 3, 48, 48)
    assert torch.allclose(teacher(x), task.model.eval()(x), atol=1e-5)


def test_balanced_pos_weight_from_the_training_split(tmp_path: Path) -> None:
    from celeba_layout import write_celeba

    from mobiletasks.data import CelebADataModule

    dm = CelebADataModule(write_celeba(tmp_path / "celeba"), image_size=32, batch_size=4, num_workers=0)
    task = AttributeTask(num_classes=40, pos_weight="balanced", model_kwargs=SMALL)
    trainer = L.Trainer(
        fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(task, datamodule=dm)
    targets = torch.as_tensor(dm.dataset("train").targets)
    positives = targets.sum(0)
    assert task.pos_weight is not None
    assert torch.allclose(task.pos_weight, (len(targets) - positives) / positives.clamp(min=1))


def test_pos_weight_and_depthwise_decay() -> None:
    task = AttributeTask(num_classes=2, pos_weight=[1.0, 4.0], model_kwargs=SMALL, depthwise_weight_decay=1e-6)
    logits, labels = torch.zeros(3, 2), torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    # positive terms weighted: -log(0.5) * (w * y + (1 - y)) averaged
    expected = torch.tensor([[1.0, 4.0], [1.0, 1.0], [1.0, 4.0]]).mean() * torch.log(torch.tensor(2.0))
    assert torch.allclose(task.hard_loss(logits, labels), expected)
    groups = {g.get("weight_decay"): g["params"] for g in task.parameter_groups()}
    depthwise = [m.weight for m in task.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 13 and {id(p) for p in groups[1e-6]} == {id(p) for p in depthwise}
    with pytest.raises(ValueError, match="pos_weight must be positive"):
        AttributeTask(num_classes=2, pos_weight=[1.0, 2.0, 3.0])


def test_a_timm_teacher_sees_its_own_resolution(tmp_path: Path) -> None:
    """A ViT takes 224x224 only: ``teacher_image_size`` resizes the student's 48x48 batches for it."""
    pytest.importorskip("timm")
    path = tmp_path / "vit.pth"
    torch.save(create_model("timm/vit_tiny_patch16_224", num_classes=4).state_dict(), path)
    task = ClassificationTask(
        num_classes=4,
        model_kwargs=SMALL,
        teacher="timm/vit_tiny_patch16_224",
        teacher_weights=str(path),
        teacher_image_size=224,
        alpha=0.0,
    )
    task.setup("fit")
    images, targets = next(iter(_loader(num=2)))
    assert task.teacher_logits(images).shape == (2, 4)
    assert torch.isfinite(task.training_loss((images, targets))[0])


def test_attribute_task_takes_the_classification_arguments_by_name() -> None:
    """AttributeTask forwards ClassificationTask's arguments by name: each lands in hparams, and label smoothing,
    which a binary loss per attribute does not have, is refused rather than ignored."""
    task = AttributeTask(num_classes=2, alpha=0.25, temperature=2.0, warmup_steps=3, model_kwargs=SMALL)
    assert (task.hparams["alpha"], task.hparams["temperature"], task.hparams["warmup_steps"]) == (0.25, 2.0, 3)
    assert task.hparams["num_classes"] == 2 and task.hparams["label_smoothing"] == 0.0
    with pytest.raises(ValueError, match="label_smoothing does not apply"):
        AttributeTask(num_classes=2, label_smoothing=0.1, model_kwargs=SMALL)
