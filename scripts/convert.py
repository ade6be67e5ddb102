"""The project's convert step: `python -m spacy_crf_ner convert` (spacy_crf_ner/convert.py)."""
import typer

from spacy_crf_ner.convert import convert_cli

if __name__ == "__main__":
    typer.run(convert_cli)
