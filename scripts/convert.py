"""The project's convert step: `python -m spacy_crf_ner convert` (spacy_crf_ner/convert.py)."""
import typer

# convert_file: bench/*.py still import it from here (through sys.path), until they import the
# package.
from spacy_crf_ner.convert import convert_cli, convert_file  # noqa: F401

if __name__ == "__main__":
    typer.run(convert_cli)
