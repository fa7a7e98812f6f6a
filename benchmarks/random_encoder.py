"""Write a model folder with an encoder's shapes and tokenizer but random weights.

For throughput and smoke runs where the weights cannot travel (a GPU machine without
the installed encoder or the hub): the step time of a model does not depend on its
weights. Scores from such a folder mean nothing.

    python benchmarks/random_encoder.py SOURCE OUT
    # SOURCE: a model folder holding config.json and tokenizer files
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from transformers import AutoConfig, AutoModel

from xstilts.model_store import TOKENIZER_FILES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="model folder (config and tokenizer)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("special_tokens_map.json", *TOKENIZER_FILES):  # copied, not re-saved
        if (args.source / name).is_file():
            shutil.copy2(args.source / name, args.out / name)
    config = AutoConfig.from_pretrained(args.source)
    model = AutoModel.from_config(config, add_pooling_layer=False)
    model.save_pretrained(args.out)
    count = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {config.model_type}, {count:,} parameters, random weights")


if __name__ == "__main__":
    main()
