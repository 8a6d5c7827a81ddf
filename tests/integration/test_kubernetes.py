"""deploy/kubernetes/rayservice.yaml against the RayService CRD, Ray Serve and the app's args.

The CRD is not vendored: it is read from ``../shared/reference/kuberay/`` beside the repository
(or ``RERANKER_KUBERAY_CRD``), and the schema check is skipped with that reason when absent.
The serveConfigV2 checks need nothing from outside.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.serve.args import AppArgs

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "deploy" / "kubernetes" / "rayservice.yaml"
CRD = Path(os.environ.get(
    "RERANKER_KUBERAY_CRD",
    REPO_ROOT.parent / "shared" / "reference" / "kuberay" / "ray.io_rayservices.yaml"))


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return doc


@pytest.fixture(scope="module")
def rayservice_schema() -> dict[str, Any]:
    if not CRD.is_file():
        pytest.skip(f"the KubeRay RayService CRD is not at {CRD} (set RERANKER_KUBERAY_CRD)")
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_manifest_matches_the_rayservice_crd(manifest: dict[str, Any],
                                             rayservice_schema: dict[str, Any]) -> None:
    import jsonschema

    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    jsonschema.validate(manifest, rayservice_schema)
    # The check has teeth: a wrong type is refused.
    broken = copy.deepcopy(manifest)
    broken["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, rayservice_schema)


def test_cluster_shape(manifest: dict[str, Any]) -> None:
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    (workers,) = cluster["workerGroupSpecs"]
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    ingress = AppArgs.model_validate(serve_config["applications"][0]["args"]).deployments.ingress
    # One ingress per node: enough workers always run to place all of them.
    assert ingress.max_replicas_per_node == 1
    assert workers["minReplicas"] >= (ingress.num_replicas or 1) <= workers["maxReplicas"]
    (container,) = workers["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"]
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "/-/healthz" in probe  # a drained proxy leaves the Service
    assert "/-/healthz" not in " ".join(container["livenessProbe"]["exec"]["command"])
    assert manifest["spec"]["serveService"]["spec"]["type"] == "LoadBalancer"


def test_serve_config_v2_is_the_shipped_app(manifest: dict[str, Any]) -> None:
    from ray.serve.schema import ServeDeploySchema

    shipped = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text())
    in_cluster = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(in_cluster)
    assert schema.proxy_location == "EveryNode" or str(schema.proxy_location).endswith("EveryNode")
    assert in_cluster["applications"] == shipped["applications"]
    (app,) = in_cluster["applications"]
    args = AppArgs.model_validate(app["args"])
    assert args.default_model_name in args.models


def test_dockerfile_installs_the_project_and_the_proxy_middleware() -> None:
    text = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=" in text and "ARG PRESETS" in text and "pip install" in text
    # The image serves provider models too: their extra is installed.
    assert 'pip install --no-cache-dir ".[providers]"' in text
    callback = next(line.split("=", 1)[1] for line in text.splitlines()
                    if line.strip().startswith("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH="))
    module, func = callback.strip().split(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), func))
