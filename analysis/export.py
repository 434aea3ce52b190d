"""Export a trial's compressed model from MLflow: the file itself (or, with ``--format
safetensors``, a file plain PyG loads) plus a JSON sidecar with its configuration and
metrics. ``trainables.load_compressed`` rebuilds and runs the compressed file."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from analysis.load import ROLE_TAG, _client
from analysis.safetensors_export import EXPORT_FORMATS

MODEL_ARTIFACT = "model/model.gnnz"
RUN_ID_LENGTH = 32  # MLflow's run ids: 32 hex digits
SHOWN_MATCHES = 5  # an ambiguous prefix lists this many of its runs


def _trial_runs(client: MlflowClient) -> list[Run]:
    """Every active trial run in the tracking store, page by page."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs, token = [], None
    while experiments:
        page = client.search_runs(experiments, filter_string=f"tags.`{ROLE_TAG}` = 'trial'",
                                  max_results=1000, page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs
    return runs


def find_run(client: MlflowClient, run_id: str, tracking_uri: str) -> Run:
    """The run ``run_id`` names: a full id, or a prefix of one trial's id (the short id
    ``pareto`` shows); no match or several are one-line errors (several listed)."""
    try:
        return client.get_run(run_id)
    except MlflowException:
        pass
    prefix = run_id.lower()
    if prefix and len(prefix) < RUN_ID_LENGTH and all(c in "0123456789abcdef" for c in prefix):
        matches = [r for r in _trial_runs(client) if r.info.run_id.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = [r.info.run_id for r in matches[:SHOWN_MATCHES]]
            shown += ["..."] if len(matches) > SHOWN_MATCHES else []
            raise ValueError(f"run id prefix {run_id!r} is ambiguous: {len(matches)} trials "
                             f"match ({', '.join(shown)}); give more of the id")
    raise ValueError(f"unknown run id {run_id!r} in {tracking_uri}; give a trial's run id or "
                     "a prefix of it (gnn-search pareto shows them)")


def export_run(run_id: str, tracking_uri: str, out: str | Path, fmt: str = "gnnz",
               weights: str = "float") -> tuple[Path, Path]:
    """Write the trial's model to ``out`` and its config + metrics to ``out`` + ``.json``;
    ``run_id`` may be a prefix that names one trial. ``fmt`` ``safetensors`` writes the
    model for plain PyG instead (:mod:`analysis.safetensors_export`, ``weights`` float or
    int8); a model it cannot write is refused before anything is written."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}")
    client = _client(tracking_uri)
    run = find_run(client, run_id, tracking_uri)
    run_id = run.info.run_id
    if run.data.tags.get(ROLE_TAG) != "trial":
        raise ValueError(f"run {run_id} is not a trial (role "
                         f"{run.data.tags.get(ROLE_TAG, 'none')!r}); export a trial's run id")
    if run.info.status != "FINISHED":
        raise ValueError(f"run {run_id} is {run.info.status}, not FINISHED: it has no model")
    out = Path(out).resolve()
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name, e.g. {out / 'model.gnnz'}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, MODEL_ARTIFACT, tmp)
        except (MlflowException, OSError):
            raise ValueError(f"run {run_id} has no {MODEL_ARTIFACT} artifact") from None
        from trainables.cycle import load_compressed
        from trainables.model_file import StorageError

        try:  # a damaged artifact is refused before anything is written to --out
            _, meta = load_compressed(local)
        except StorageError as err:
            reason = str(err).removeprefix(f"{local}: ")
            raise StorageError(
                f"run {run_id}'s {MODEL_ARTIFACT} is damaged: {reason}; export needs the "
                "model file its trial wrote (run the configuration again with "
                "`gnn-search trial`)") from None
        if fmt == "safetensors":
            from analysis.safetensors_export import check_exportable, write_safetensors

            check_exportable(meta["model"])
            out.parent.mkdir(parents=True, exist_ok=True)
            write_safetensors(local, out, weights)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, out)
    return out, _write_sidecar(out, run, meta, fmt)


def _write_sidecar(out: Path, run: Run, meta: dict, fmt: str) -> Path:
    """``out`` + ``.json``: the trial's config, model spec, metrics and tags, and how to load
    ``out``."""
    load_with = ("from trainables import load_compressed; model, meta = "
                 f"load_compressed('{out.name}')")
    if fmt == "safetensors":
        load_with = (f"from safetensors.torch import load_file; tensors = load_file("
                     f"'{out.name}'); then a plain PyG model's load_state_dict (README, export)")
    sidecar = out.with_name(out.name + ".json")
    sidecar.write_text(json.dumps({
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "config": meta["config"],
        "model": meta["model"],
        "metrics": run.data.metrics,
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "load_with": load_with,
    }, indent=2, sort_keys=True))
    return sidecar


if __name__ == "__main__":  # python -m analysis.export ... == gnn-search export ...
    from analysis.cli import main

    sys.exit(main(["export", *sys.argv[1:]]))
