"""``python -m spacy_crf_ner debug-data``: the NER checks of ``spacy debug data`` for ``crf_ner``.

spaCy runs its NER section only for components made by the ``ner`` factory. This command reads
the training and development corpora of a config as ``spacy debug data`` does and reports, for
the entity annotation: the count of each label, tokens with no annotation, entities that start or
end with whitespace (an error, as in spaCy) or punctuation, entities crossing a sentence
boundary, labels with few examples, and labels of the training data missing from the dev data.
"""
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List

import typer
from spacy import util
from spacy.cli._util import parse_config_overrides, show_validation_error
from spacy.schemas import ConfigSchemaTraining
from spacy.training import Example
from spacy.util import registry, resolve_dot_names
from wasabi import Printer

# As spaCy's debug data: fewer examples of a label than this will hardly train it.
NEW_LABEL_THRESHOLD = 50
EXAMPLES_SHOWN = 5


@dataclass
class NerDataReport:
    """What :func:`check_entities` found in one corpus; the lists hold ``(text, doc text)``."""

    label_counts: Counter = field(default_factory=Counter)
    missing_tokens: int = 0
    whitespace_ents: List[tuple] = field(default_factory=list)
    punct_ents: List[tuple] = field(default_factory=list)
    boundary_cross_ents: List[tuple] = field(default_factory=list)


def check_entities(examples: Iterable[Example]) -> NerDataReport:
    """Check the gold entities of ``examples`` (their ``reference`` docs)."""
    report = NerDataReport()
    for eg in examples:
        doc = eg.reference
        report.missing_tokens += sum(token.ent_iob == 0 for token in doc)
        sent_starts = [token.is_sent_start for token in doc]
        for ent in doc.ents:
            report.label_counts[ent.label_] += 1
            found = (ent.text, doc.text[:80])
            if ent[0].is_space or ent[-1].is_space or ent.text != ent.text.strip():
                report.whitespace_ents.append(found)
            elif _punct(ent[0].text) or _punct(ent[-1].text):
                report.punct_ents.append(found)
            if any(sent_starts[i] for i in range(ent.start + 1, ent.end)):
                report.boundary_cross_ents.append(found)
    return report


def _punct(text: str) -> bool:
    return bool(text) and all(char in string.punctuation for char in text)


def print_report(train: NerDataReport, dev: NerDataReport, msg: Printer) -> bool:
    """Print the NER section; True if the data has an error (whitespace entities)."""
    msg.divider("Named Entity Recognition (crf_ner)")
    msg.info(f"{len(train.label_counts)} label(s) in the train data")
    msg.text(f"{train.missing_tokens} missing value(s) (tokens with no entity annotation)")
    counts = ", ".join(f"'{label}' ({n})" for label, n in train.label_counts.most_common())
    msg.text(f"Labels in train data: {counts}")
    for label, n in sorted(train.label_counts.items()):
        if n <= NEW_LABEL_THRESHOLD:
            msg.warn(f"Low number of examples for label '{label}' ({n})")
    missing_in_dev = sorted(set(train.label_counts) - set(dev.label_counts))
    if missing_in_dev:
        msg.warn(f"Label(s) of the train data missing from the dev data: {missing_in_dev}")
    else:
        msg.good("Every label of the train data is in the dev data")
    checks = [
        ("train", train.whitespace_ents, msg.fail, "entity span(s) starting or ending with whitespace"),
        ("dev", dev.whitespace_ents, msg.fail, "entity span(s) starting or ending with whitespace"),
        ("train", train.punct_ents, msg.warn, "entity span(s) starting or ending with punctuation"),
        ("dev", dev.punct_ents, msg.warn, "entity span(s) starting or ending with punctuation"),
        ("train", train.boundary_cross_ents, msg.warn, "entity span(s) crossing sentence boundaries"),
        ("dev", dev.boundary_cross_ents, msg.warn, "entity span(s) crossing sentence boundaries"),
    ]
    for corpus, found, report, what in checks:
        if found:
            report(f"{len(found)} {what} in the {corpus} data")
            for text, doc_text in found[:EXAMPLES_SHOWN]:
                msg.text(f"  {text!r} in {doc_text!r}")
        else:
            msg.good(f"No {what} in the {corpus} data")
    return bool(train.whitespace_ents or dev.whitespace_ents)


def debug_data(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="Training config", exists=True, dir_okay=False),
) -> None:
    """The NER checks of ``spacy debug data`` on a config's train and dev corpora, for crf_ner.
    Config overrides as for spaCy, e.g. ``--paths.train train.spacy --paths.dev dev.spacy``.
    Exits with 1 if the data has an error."""
    msg = Printer()
    overrides = parse_config_overrides(ctx.args)
    with show_validation_error(config_path):
        config = util.load_config(config_path, overrides=overrides, interpolate=False)
        nlp = util.load_model_from_config(config)
        resolved = nlp.config.interpolate()
        training = registry.resolve(resolved["training"], schema=ConfigSchemaTraining)
    factories: Dict[str, str] = {name: nlp.get_pipe_meta(name).factory for name in nlp.pipe_names}
    if "crf_ner" not in factories.values():
        msg.fail(f"{config_path}: no crf_ner component in the pipeline {nlp.pipe_names}", exits=1)
    train_corpus, dev_corpus = resolve_dot_names(resolved, [training["train_corpus"], training["dev_corpus"]])
    train = check_entities(train_corpus(nlp))
    dev = check_entities(dev_corpus(nlp))
    if print_report(train, dev, msg):
        raise typer.Exit(1)
