"""``mobiletasks summary NAME [--input-size N] [--json] [KEY=VALUE ...]`` and ``mobiletasks list``."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from ..contracts import HasInputSize
from ..factory import create_model
from ..registry import list_backbones, list_models
from ..summary import model_summary, resized_to


def main(argv: list[str]) -> int:
    """Parameters and MACs of a model, to compare with the papers' tables."""
    parser = argparse.ArgumentParser(prog="mobiletasks summary", description=main.__doc__)
    parser.add_argument("name", help="a model from `mobiletasks list`")
    parser.add_argument("--input-size", type=int, default=None, help="image side (default: the model's own)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "kwargs", nargs="*", metavar="KEY=VALUE", help="create_model arguments, values read as YAML scalars"
    )
    args = parser.parse_intermixed_args(argv)
    kwargs = parse_kwargs(args.kwargs, parser)
    try:
        model = create_model(args.name, **kwargs)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    size = args.input_size or (model.default_input_size if isinstance(model, HasInputSize) else 224)
    if resized_to(model) not in (None, (size, size)) and "size" not in kwargs:
        kwargs["size"] = size  # a detector resizes to its own size: build it for the size asked
        model = create_model(args.name, **kwargs)
    try:
        summary = model_summary(model, size)
    except ValueError as err:
        parser.error(str(err))
    if args.json:
        print(json.dumps({"model": args.name, "kwargs": kwargs, **summary.to_dict()}))
        return 0
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    print(f"{args.name}({settings}) at {size}x{size}")
    print(f"  params           {summary.params:>14,}  ({summary.params / 1e6:.2f}M)")
    print(
        f"  params, no norm  {summary.params_no_norm:>14,}  ({summary.params_no_norm / 1e6:.2f}M, as the papers count)"
    )
    print(f"  MACs (MAdds)     {summary.macs:>14,}  ({summary.macs / 1e6:.1f}M)")
    return 0


def parse_kwargs(pairs: list[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"expected KEY=VALUE, got {pair!r} (e.g. width_mult=0.5)")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            parser.error(f"cannot read the value of {key!r}: {err}")
    return out


def list_main(argv: list[str]) -> int:
    """The registered models and backbones."""
    parser = argparse.ArgumentParser(prog="mobiletasks list", description=list_main.__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    names = {"models": list_models(), "backbones": list_backbones()}
    if args.json:
        print(json.dumps(names))
    else:
        for kind, items in names.items():
            print(f"{kind}: {', '.join(items)}")
        print("backbones also: 'timm/<name>' (any timm model with features_only), 'torchvision/<classifier>'")
    return 0
