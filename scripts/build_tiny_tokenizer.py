"""Build src/xstilts/resources/tiny-tokenizer.json, the tokenizer of the tiny test model.

A SentencePiece-style Unigram model (as XLM-R uses) with XLM-R's special tokens
and pair template, trained on the demo's generated sentences and the real text
samples in shared/data/real (XQuAD, Tatoeba, UD, XCOPA). Run once; the output
is committed so tests and the demo need no training step and no download.

    python scripts/build_tiny_tokenizer.py --real-data ../shared/data/real
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path

from tokenizers import SentencePieceUnigramTokenizer
from tokenizers.processors import TemplateProcessing

from xstilts.demo.smoke import LANGUAGES, all_demo_words, nli_example, paraphrase_example

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0-3, mask after


def real_texts(root: Path) -> Iterator[str]:
    for path in sorted(root.glob("xquad/*.json")):
        for article in json.loads(path.read_text("utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                yield paragraph["context"]
                for qa in paragraph["qas"]:
                    yield qa["question"]
    for path in sorted(root.glob("tatoeba/tatoeba.*")):
        yield from path.read_text("utf-8").splitlines()
    for path in sorted(root.glob("udpos/*.conllu")):
        for line in path.read_text("utf-8").splitlines():
            if line.startswith("# text = "):
                yield line[len("# text = ") :]
    for path in sorted(root.glob("xcopa/*.jsonl")):
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line)
            yield from (row["premise"], row["choice1"], row["choice2"])


def demo_texts() -> Iterator[str]:
    rng = random.Random(0)
    yield from all_demo_words()
    for _ in range(3000):
        for lang in LANGUAGES:
            row = paraphrase_example(rng, lang)
            yield str(row["sentence1"])
        row = nli_example(rng)
        yield str(row["premise"])
        yield str(row["hypothesis"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-data", type=Path, required=True)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument(
        "--out", type=Path, default=Path("src/xstilts/resources/tiny-tokenizer.json")
    )
    args = parser.parse_args()
    texts = [*demo_texts(), *real_texts(args.real_data)]
    tokenizer = SentencePieceUnigramTokenizer()
    tokenizer.train_from_iterator(
        texts,
        vocab_size=args.vocab_size,
        special_tokens=SPECIALS,
        unk_token="<unk>",
        show_progress=False,
    )
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(args.out))
    print(f"wrote {args.out}: {tokenizer.get_vocab_size()} pieces from {len(texts)} texts")


if __name__ == "__main__":
    main()
