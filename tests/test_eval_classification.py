"""``ClassificationEvaluator`` and ``AttributeEvaluator``: references written here (top-k by ``torch.topk``, AP as
the mean precision at each positive's rank, accuracy by thresholding), torchmetrics' functional API, and errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy, multilabel_average_precision

from mobiletasks.evaluation.classification import AttributeEvaluator, ClassificationEvaluator

# ------------------------------------------------------------------------------------------- references


def topk_accuracy(logits: Tensor, labels: Tensor, k: int) -> float:
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Non-interpolated AP: the mean, over the positives, of the precision among the images ranked up to each
    (scores distinct, so no ties)."""
    order = scores.argsort(descending=True)
    hits = labels[order].to(torch.float64)
    precision_at_rank = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    return float(precision_at_rank[hits == 1].mean())


def batches(*tensors: Tensor, sizes: tuple[int, ...]) -> list[tuple[Tensor, ...]]:
    out, start = [], 0
    for size in sizes:
        out.append(tuple(t[start : start + size] for t in tensors))
        start += size
    return out


# ------------------------------------------------------------------------------------------- top-k accuracy


def test_topk_matches_torch_topk_and_torchmetrics() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=g)
    labels = torch.randint(0, 7, (50,), generator=g)
    evaluator = ClassificationEvaluator(7, top_k=(1, 3, 5))
    for batch in batches(logits, labels, sizes=(16, 0, 20, 14)):  # an empty batch among them
        evaluator.update(*batch)
    result = evaluator.compute()
    assert list(result) == ["top1", "top3", "top5"]
    for k in (1, 3, 5):
        assert result[f"top{k}"] == pytest.approx(topk_accuracy(logits, labels, k))
        expected = multiclass_accuracy(logits, labels, 7, average="micro", top_k=k)
        assert result[f"top{k}"] == pytest.approx(float(expected))


def test_topk_above_num_classes_is_left_out_and_reset_forgets() -> None:
    evaluator = ClassificationEvaluator(4)
    assert evaluator.compute() == {"top1": 0.0}  # top5 > 4 classes; nothing seen yet
    evaluator.update(torch.tensor([[0.0, 1.0, 0.0, 0.0]]), torch.tensor([1]))
    assert evaluator.compute() == {"top1": 1.0}
    evaluator.reset()
    evaluator.update(torch.tensor([[0.0, 1.0, 0.0, 0.0]]), torch.tensor([2]))
    assert evaluator.compute() == {"top1": 0.0}


def test_classification_errors() -> None:
    evaluator = ClassificationEvaluator(5)
    with pytest.raises(ValueError, match="labels hold 7 but num_classes is 5: the data module's classes"):
        evaluator.update(torch.zeros(2, 5), torch.tensor([1, 7]))
    with pytest.raises(ValueError, match="labels hold -1 but num_classes is 5"):
        evaluator.update(torch.zeros(2, 5), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"logits have shape \(2, 6\).*\[B, 5\]"):
        evaluator.update(torch.zeros(2, 6), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="AttributeEvaluator"):
        evaluator.update(torch.zeros(2, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"labels have shape \(3,\)"):
        evaluator.update(torch.zeros(2, 5), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        ClassificationEvaluator(1)
    with pytest.raises(ValueError, match="at least 1"):
        ClassificationEvaluator(5, top_k=(0, 1))


# ------------------------------------------------------------------------------------------- attributes


def test_attribute_ap_and_accuracy_match_references() -> None:
    g = torch.Generator().manual_seed(1)
    names = ["a", "b", "c", "d"]
    logits = torch.randn(60, 4, generator=g)  # distinct scores: no ties
    labels = (torch.rand(60, 4, generator=g) < torch.tensor([0.1, 0.3, 0.5, 0.9])).float()
    evaluator = AttributeEvaluator(names, threshold=0.3)
    for batch in batches(logits, labels, sizes=(25, 0, 35)):
        evaluator.update(*batch)
    result = evaluator.compute()

    aps = [average_precision(logits[:, i], labels[:, i]) for i in range(4)]
    accs = [float(((logits[:, i].sigmoid() > 0.3).float() == labels[:, i]).float().mean()) for i in range(4)]
    for i, name in enumerate(names):
        assert result[f"ap/{name}"] == pytest.approx(aps[i])
        assert result[f"acc/{name}"] == pytest.approx(accs[i])
    assert result["map"] == pytest.approx(sum(aps) / 4)
    assert result["accuracy"] == pytest.approx(sum(accs) / 4)
    assert result["ap_undefined"] == 0.0
    reference = multilabel_average_precision(logits, labels.long(), 4, average="macro")
    assert result["map"] == pytest.approx(float(reference))


def test_accuracy_threshold_applies_to_probabilities() -> None:
    # logits inside [0, 1]: torchmetrics would take them for probabilities; the evaluator applies the sigmoid
    logits = torch.tensor([[0.2], [0.4], [0.9]])
    evaluator = AttributeEvaluator(["x"], threshold=0.5)
    evaluator.update(logits, torch.tensor([[1.0], [1.0], [0.0]]))
    assert evaluator.compute()["accuracy"] == pytest.approx(2 / 3)  # sigmoid > 0.5 everywhere: all present


def test_attribute_without_positives_has_no_ap() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(20, 3, generator=g)
    labels = torch.zeros(20, 3)
    labels[::3, 0] = 1
    labels[:, 2] = 1  # every image positive: AP defined, 1.0
    evaluator = AttributeEvaluator(["some", "none", "all"])
    evaluator.update(logits, labels.bool())  # bool labels work too
    result = evaluator.compute()
    assert "ap/none" not in result and "acc/none" in result
    assert result["ap_undefined"] == 1.0
    assert result["ap/all"] == 1.0
    assert result["map"] == pytest.approx((average_precision(logits[:, 0], labels[:, 0]) + 1.0) / 2)

    empty = AttributeEvaluator(["a", "b"])
    empty.update(torch.zeros(0, 2), torch.zeros(0, 2))
    assert empty.compute() == {"map": 0.0, "ap_undefined": 2.0, "accuracy": 0.0}
    only_negatives = AttributeEvaluator(["a"])
    only_negatives.update(torch.tensor([[-3.0]]), torch.tensor([[0.0]]))
    assert only_negatives.compute() == {"map": 0.0, "ap_undefined": 1.0, "accuracy": 1.0, "acc/a": 1.0}
    only_negatives.reset()
    assert only_negatives.compute()["accuracy"] == 0.0


def test_attribute_errors() -> None:
    evaluator = AttributeEvaluator(["a", "b"])
    with pytest.raises(ValueError, match=r"labels hold -1\.?0?, not 0 or 1.*map it to 0"):
        evaluator.update(torch.zeros(2, 2), torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="labels hold 2"):
        evaluator.update(torch.zeros(1, 2), torch.tensor([[2, 0]]))
    with pytest.raises(ValueError, match=r"labels have shape \(2,\) for logits of shape \(2, 2\)"):
        evaluator.update(torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"logits have shape \(2, 3\).*\[B, 2\]"):
        evaluator.update(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="threshold is 50"):
        AttributeEvaluator(["a"], threshold=50)
    with pytest.raises(ValueError, match="names is empty"):
        AttributeEvaluator([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_inputs_on_cuda_are_moved_to_cpu() -> None:
    evaluator = ClassificationEvaluator(3, top_k=(1,))
    evaluator.update(torch.tensor([[0.0, 2.0, 1.0]], device="cuda"), torch.tensor([1], device="cuda"))
    attributes = AttributeEvaluator(["a"])
    attributes.update(torch.tensor([[2.0], [-1.0]], device="cuda"), torch.tensor([[1.0], [0.0]], device="cuda"))
    assert evaluator.compute() == {"top1": 1.0}
    assert attributes.compute()["map"] == 1.0
