"""Write tests/fixtures/tokenizer_cases.json: prompts and the ids transformers' CLIPTokenizer gives.

The expected ids come from the slow `CLIPTokenizer` of transformers 4.57.6 (with ftfy 6.3.1
installed, so its text cleanup is `ftfy.fix_text`), called the way diffusers' Stable Diffusion
pipelines call it: `tok(prompt, padding="max_length", max_length=tok.model_max_length,
truncation=True).input_ids`, where a config without a usable model_max_length gets 77.

Each case names a tokenizer variant. A variant is a set of config files (written next to the
shared vocab.json / merges.txt) that the Rust test writes into a temporary folder:
  sd1    what `CLIPTokenizer(vocab, merges, pad_token="<|endoftext|>").save_pretrained()`
         writes (new format, model_max_length left at transformers' "no limit" sentinel)
  sd2    the legacy files Stable Diffusion 2.x ships (pad token "!", which transformers then
         also splits out of the prompt as a special token)
  ti     sd1 plus a textual-inversion token "<cat-toy>" added with `add_tokens`, model_max_length 77
  ti_legacy  the same token in the legacy added_tokens.json next to SD 1.x's legacy files
  short  legacy SD 1.x files with model_max_length 16 (truncation at another length)
  left   legacy SD 2.x files with model_max_length 16, left padding and truncation, and
         split_special_tokens (so "!" is ordinary text again)
  strip  sd1 plus added tokens with lstrip/rstrip ("<l>") and single_word ("<w>")
Where the fast tokenizer (`CLIPTokenizerFast`, converted from the same files) disagrees with
the slow one, the case also records `fast_ids`; diffusers uses the slow class.

`clean_cases` pin the text cleanup alone (transformers' `whitespace_clean(fix_text(t)).lower()`),
including every HTML 4 named entity and the numeric character reference edge cases.

usage: HF_HUB_OFFLINE=1 /work/sdvenv/bin/python tools/make_tokenizer_fixtures.py \
           [--vocab models/tiny-sd/tokenizer] [--out tests/fixtures/tokenizer_cases.json]
(models/tiny-sd/tokenizer comes from tools/clip_vocab.py.)
"""
import argparse
import html.entities
import json
import os
import shutil
import tempfile

import ftfy
import transformers
from transformers import AddedToken, CLIPTokenizer, CLIPTokenizerFast
from transformers.models.clip.tokenization_clip import whitespace_clean

# transformers' VERY_LARGE_INTEGER means "no limit"; diffusers would then pad to it, so the
# Rust tokenizer (like the CLIP text encoder's 77 positions) falls back to 77.
DEFAULT_MAX_LENGTH = 77
LARGE_INTEGER = int(1e20)

LONG = (
    "a highly detailed matte painting of a medieval castle on a cliff above a stormy sea, "
    "dramatic lighting, volumetric clouds, crashing waves, seagulls, by greg rutkowski and "
    "thomas kinkade, trending on artstation, 8k resolution, unreal engine 5, octane render, "
    "cinematic composition, golden hour, intricate stonework, banners waving in the wind, "
    "knights on horseback riding across a drawbridge, torches, mist, moss covered walls"
)

PROMPTS = [
    "a photo of an astronaut riding a horse",
    "A PHOTO OF AN ASTRONAUT Riding A Horse",
    "Hello, world! How's it going?",
    "portrait of a man, 35mm, f/1.8, 8k, trending on artstation",
    "1234567890 3.14159 2024-01-01 10:30pm",
    "I can't, you won't, they're, we've, I'm, you'll, he'd",
    "THEY'RE HERE, IT'S FINE, DON'T PANIC",
    "don\u2019t stop \u2013 it\u2019s \u201cquoted\u201d \u2018single\u2019 \u201eGerman\u201f",
    "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade, \u00c6r\u00f8sk\u00f8bing",
    "e\u0301le\u0300ve, Ame\u0301lie (decomposed accents)",
    "\u6771\u4eac\u306e\u591c\u666f\u3001\u685c\u306e\u82b1",
    "\ud55c\uad6d\uc5b4 \ud504\ub86c\ud504\ud2b8, \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442",
    "a cat \U0001f431 with a hat \U0001f3a9, \U0001f469\u200d\U0001f680 astronaut, \U0001f1eb\U0001f1f7 flag",
    "thumbs up \U0001f44d\U0001f3fd and keycap 1\ufe0f\u20e3",
    "Stra\u00dfe in M\u00fcnchen, GROSSE STRASSE, \u1e9e",
    "\u0130stanbul, D\u0130YARBAKIR, \u0131i I\u0130",
    "\u039f\u0394\u039f\u03a3 \u03a3\u039f\u03a6\u0399\u0391\u03a3, \u039f\u0394\u039f\u03a3.",
    "Tom &amp; Jerry &lt;3 &quot;cartoon&quot; &#39;classic&#39; &nbsp;&copy; &eacute;t&eacute; &EACUTE;",
    "&amp;amp; double &#x41;&#66;&#X43; &unknown; &amp no semicolon &#65abc; &#128;uro",
    "a <b>bold</b> &amp; tag",
    "line one &amp;\nline <two> &amp;\nline three &amp;",
    "  leading and trailing   spaces  ",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic\u2003em\u2028ls\x0cff\x0bvt",
    "",
    "   \t\n ",
    "<|startoftext|>a cat<|endoftext|> and a dog",
    "<|ENDOFTEXT|> uppercase special <|StartOfText|> <|\u017ftartoftext|>",
    "hello!!! ??? ... --- *** !?",
    "masterpiece, best quality, (highly detailed:1.2), [sharp focus], {artstation}, <lora:foo:0.8>",
    "\ufb01ne \ufb02owers, \ufb03x, \u0133ssel, \u01c5emal, \u0149",
    "\uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28\u3000\uff54\uff45\uff58\uff54\uff01 \uff76\uff9e\uff77\uff9e \uffe5100",
    "\x1b[31mred\x1b[0m text",
    "zero\u200bwidth soft\u00adhyphen bom\ufeffhere ctrl\x07bell del\x7f",
    "digits \u0661\u0662\u0663 \u2167 \u00b2 \u00bd \u5341",
    "a\u0345b \u1fb3 it'\u017f ok",
    "https://example.com/image_01.png?size=512x512#top",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "mixed 'quotes' and \"double\" quotes, it's O'Neil's rock'n'roll",
    "c1 controls \x80 and \x93quoted\x94",
    LONG,
    " ".join([LONG] * 6),
    # 75 BPE tokens exactly fill the 77 positions; 76 lose the last one.
    " ".join(["cat"] * 75),
    " ".join(["cat"] * 76),
]

SD2_PROMPTS = [
    "a photo of an astronaut riding a horse",
    "hello! wow!!!",
    "\uff01fullwidth bang\uff01",
    "",
]

TI_PROMPTS = [
    "a photo of <cat-toy> on a beach",
    "a<cat-toy>b <cat-toy><cat-toy>",
    "<CAT-TOY> stays text",
]

LEFT_PROMPTS = [
    "a photo of an astronaut riding a horse on the moon at night",
    "hello! <|endoftext|>",
    "",
]

STRIP_PROMPTS = [
    "a  <l>  b",
    "x<w>y x <w> y x<w> y x <w>y",
    "<w>",
    "a <l><w> b <w><l>",
]

SHORT_PROMPTS = [
    "a photo of an astronaut riding a horse",
    "a photo of an astronaut riding a horse on the moon at night",
    "",
]

CLEAN_EXTRA = [
    "&#0; &#13; &#x7f; &#1; &#xD800; &#x110000; &#99999999999999999999999; &#xFDD0; &#x1FFFE;",
    "&#65; &#x1F600; &#X1f600; &#xZZ; &#; &#x; &#65x;",
    "&#128;&#129;&#130;&#131;&#132;&#133;&#134;&#135;&#136;&#137;&#138;&#139;&#140;&#141;&#142;&#143;",
    "&#144;&#145;&#146;&#147;&#148;&#149;&#150;&#151;&#152;&#153;&#154;&#155;&#156;&#157;&#158;&#159;",
    "&amp;lt;b&amp;gt; twice-escaped",
    "&ampersand; &AMP; &Amp; &aMP;",
    "\x85 next line",
    "no entities < here &amp;\nnor &amp; here",
    "first &amp;\r\nsecond <x> &amp;",
]


def at(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def legacy_files(pad, max_length, **extra):
    """The legacy config files Stable Diffusion 1.x/2.x ship (no added_tokens_decoder)."""
    def typed(content):
        return {"__type": "AddedToken", **at(content)}
    config = {
        "add_prefix_space": False,
        "bos_token": typed("<|startoftext|>"),
        "do_lower_case": True,
        "eos_token": typed("<|endoftext|>"),
        "errors": "replace",
        "model_max_length": max_length,
        "name_or_path": "stable-diffusion/tokenizer",
        "pad_token": pad,
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": typed("<|endoftext|>"),
        **extra,
    }
    special = {"bos_token": at("<|startoftext|>"), "eos_token": at("<|endoftext|>"),
               "pad_token": pad, "unk_token": at("<|endoftext|>")}
    return {
        "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
        "special_tokens_map.json": json.dumps(special, indent=2) + "\n",
    }


def saved_files(vocab_dir, **kwargs):
    """The config files transformers' save_pretrained writes for a CLIPTokenizer."""
    added = kwargs.pop("added", [])
    tok = CLIPTokenizer(os.path.join(vocab_dir, "vocab.json"), os.path.join(vocab_dir, "merges.txt"), **kwargs)
    if added:
        tok.add_tokens(added)
    out = tempfile.mkdtemp(prefix="clip-tok-")
    try:
        tok.save_pretrained(out)
        return {name: open(os.path.join(out, name), encoding="utf-8").read()
                for name in sorted(os.listdir(out)) if name not in ("vocab.json", "merges.txt")}
    finally:
        shutil.rmtree(out)


def load(vocab_dir, files, cls):
    """Load `cls` from vocab_dir's vocab/merges plus `files`, as diffusers does with from_pretrained."""
    d = tempfile.mkdtemp(prefix="clip-tok-")
    try:
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(vocab_dir, name), d)
        for name, text in files.items():
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write(text)
        return cls.from_pretrained(d)
    finally:
        shutil.rmtree(d)


def encode(tok, prompt):
    max_length = tok.model_max_length if tok.model_max_length <= LARGE_INTEGER else DEFAULT_MAX_LENGTH
    return tok(prompt, padding="max_length", max_length=max_length, truncation=True).input_ids


def clean(tok, text):
    return whitespace_clean(tok.fix_text(text)).lower()


def entity_texts():
    """Every HTML 4 named entity (and &apos;), plus the all-caps spelling ftfy also decodes."""
    names = sorted(set(html.entities.name2codepoint) | {"apos"})
    texts = []
    for name in names:
        texts.append(f"x&{name};y")
        if name == name.lower():
            texts.append(f"x&{name.upper()};y")
    return texts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", default="models/tiny-sd/tokenizer")
    ap.add_argument("--out", default="tests/fixtures/tokenizer_cases.json")
    args = ap.parse_args()
    assert transformers.__version__ == "4.57.6", transformers.__version__
    assert ftfy.__version__ == "6.3.1", ftfy.__version__

    variants = {
        "sd1": saved_files(args.vocab, pad_token="<|endoftext|>"),
        "sd2": legacy_files("!", 77),
        "ti": saved_files(args.vocab, pad_token="<|endoftext|>", model_max_length=77, added=["<cat-toy>"]),
        "ti_legacy": {**legacy_files("<|endoftext|>", 77),
                      "added_tokens.json": json.dumps({"<cat-toy>": 49408}, indent=2) + "\n"},
        "short": legacy_files("<|endoftext|>", 16),
        "left": legacy_files("!", 16, padding_side="left", truncation_side="left", split_special_tokens=True),
        "strip": saved_files(args.vocab, pad_token="<|endoftext|>", model_max_length=77,
                             added=[AddedToken("<l>", lstrip=True, rstrip=True), AddedToken("<w>", single_word=True)]),
    }
    prompts = {"sd1": PROMPTS, "sd2": SD2_PROMPTS, "ti": TI_PROMPTS, "ti_legacy": TI_PROMPTS, "short": SHORT_PROMPTS,
               "left": LEFT_PROMPTS, "strip": STRIP_PROMPTS}

    cases = []
    disagreements = 0
    for variant, files in variants.items():
        slow = load(args.vocab, files, CLIPTokenizer)
        fast = load(args.vocab, files, CLIPTokenizerFast)
        for prompt in prompts[variant]:
            case = {"variant": variant, "prompt": prompt, "ids": encode(slow, prompt)}
            fast_ids = encode(fast, prompt)
            if fast_ids != case["ids"]:
                case["fast_ids"] = fast_ids
                disagreements += 1
            cases.append(case)

    slow = load(args.vocab, variants["sd1"], CLIPTokenizer)
    clean_texts = PROMPTS + CLEAN_EXTRA + entity_texts()
    clean_cases = [{"text": t, "clean": clean(slow, t)} for t in clean_texts]

    astronaut = cases[0]["ids"]
    assert astronaut == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407] + [49407] * 67, astronaut

    # One case per line keeps the file reviewable and its diffs small; \u escapes keep invisible
    # characters (U+200B, U+FEFF, U+2028) visible.
    lines = ["{",
             f'  "generator": "tools/make_tokenizer_fixtures.py (transformers {transformers.__version__}, ftfy {ftfy.__version__})",',
             '  "variants": ' + json.dumps(variants, indent=2, sort_keys=True).replace("\n", "\n  ") + ",",
             '  "cases": [']
    lines += [f"    {json.dumps(c)}," for c in cases]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["  ],", '  "clean_cases": [']
    lines += [f"    {json.dumps(c)}," for c in clean_cases]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["  ]", "}"]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{args.out}: {len(cases)} cases ({disagreements} where CLIPTokenizerFast differs), "
          f"{len(clean_cases)} clean cases")


if __name__ == "__main__":
    main()
