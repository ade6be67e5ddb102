"""The package's command line: ``python -m spacy_crf_ner <command>``."""
import typer

from .annotate import annotate_command
from .calibration import calibrate
from .convert import convert_cli
from .debug_data import debug_data

app = typer.Typer(help="spacy-crf-ner commands", no_args_is_help=True, add_completion=False)


@app.callback()
def main() -> None:
    """spacy-crf-ner's commands (a callback, so that typer keeps the command names even when
    there is a single command)."""


app.command("annotate")(annotate_command)
app.command("calibrate")(calibrate)
app.command("convert")(convert_cli)
app.command("debug-data", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(debug_data)

if __name__ == "__main__":
    app()
