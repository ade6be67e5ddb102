"""The package's command line: ``python -m spacy_crf_ner <command>``."""
import typer

from .debug_data import debug_data

app = typer.Typer(help="spacy-crf-ner commands", no_args_is_help=True)
# A group even with one command, so that the command's name is always needed.
app.callback()(lambda: None)
app.command("debug-data", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(debug_data)

if __name__ == "__main__":
    app()
