"""The container and Kubernetes files: valid against the Kubernetes schemas (offline), and saying what
the issue asks: probes on the API's health endpoints, limits, an autoscaled worker, the key as a Secret,
a shared volume, and no egress but PostgreSQL and DNS. No Docker engine runs here, so the Dockerfile and
the compose file are checked as text and YAML, and their steps are the ones CI proves (make install, kb ...)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from app.settings import ApiSettings, Settings, env_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docs" / "deploy" / "k8s"
API_PORT = ApiSettings().port
K8S_VERSION = "1.30.0"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all_k8s() -> list[dict]:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [d for name in kust["resources"] for d in _docs(K8S / name)]


def _one(kind: str, name: str) -> dict:
    found = [d for d in _all_k8s() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def test_every_manifest_is_valid_against_the_kubernetes_schema():
    import kubernetes_validate

    docs = _all_k8s()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "Secret", "PersistentVolumeClaim",
                                         "HorizontalPodAutoscaler", "NetworkPolicy", "Job", "ConfigMap"}
    for d in docs:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)  # raises on any unknown or wrong field
    # every file in the folder is applied by the kustomization
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_a_broken_manifest_fails_validation():
    import kubernetes_validate

    bad = _one("Deployment", "kb-api")
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def _container(deployment: dict) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def test_api_deployment_probes_limits_key_and_shared_volume():
    dep = _one("Deployment", "kb-api")
    c = _container(dep)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["ports"][0]["containerPort"] == API_PORT
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys() <= c["resources"]["limits"].keys()
    spec = dep["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["master-key"]["secret"]["secretName"] == "kb-master-key"
    assert vols["master-key"]["secret"]["defaultMode"] & 0o077 == 0  # kb doctor wants the key private
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "kb-data"
    assert _one("PersistentVolumeClaim", "kb-data")["spec"]["accessModes"] == ["ReadWriteMany"]
    svc = _one("Service", "kb-api")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["port"] == API_PORT


def test_gpu_overlay_adds_a_gpu_limit_to_the_api():
    kust = yaml.safe_load((K8S / "gpu" / "kustomization.yaml").read_text())
    (patch,) = kust["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": "kb-api"}
    ops = yaml.safe_load(patch["patch"])
    paths = {op["path"] for op in ops}
    assert "/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu" in paths


def test_worker_deployment_is_autoscaled():
    dep = _one("Deployment", "kb-worker")
    assert _container(dep)["command"] == ["kb", "worker"]
    assert "limits" in _container(dep)["resources"]
    hpa = _one("HorizontalPodAutoscaler", "kb-worker")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kb-worker"}
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"] >= 1


def test_network_policy_allows_no_egress_but_postgres_and_dns():
    pol = _one("NetworkPolicy", "kb-no-egress")
    spec = pol["spec"]
    assert "Egress" in spec["policyTypes"]
    assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "kb"}
    for rule in spec["egress"]:
        assert rule.get("to"), "a rule without 'to' allows every destination"
        for peer in rule["to"]:
            assert "ipBlock" not in peer  # no address outside the cluster
            assert "podSelector" in peer
        assert {p["port"] for p in rule["ports"]} <= {5432, 53}
    # every kb pod is covered by the policy
    for d in _all_k8s():
        if d["kind"] in ("Deployment", "Job"):
            assert d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kb"


def test_every_kb_variable_in_the_deploy_files_is_a_setting():
    valid = {n.upper() for n in env_names(Settings)}
    text = "\n".join(p.read_text() for p in [ROOT / "Dockerfile", ROOT / "compose.yaml", *K8S.rglob("*.yaml")])
    used = set(re.findall(r"\bKB_[A-Z0-9_]+", text))  # compose's own ${...} variables carry no KB_ prefix
    unknown = sorted(n for n in used if n not in valid)
    assert not unknown, unknown


def test_compose_has_postgres_api_web_and_n_workers_on_one_volume():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "init", "api", "web", "worker"} <= services.keys()
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("api", "web", "worker", "init"):
        s = services[name]
        assert "kb-data:/data" in s["volumes"]
        assert s["environment"]["KB_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert services["api"]["command"] == ["kb", "api"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["web"]["command"][:2] == ["kb", "serve"]
    assert services["worker"]["command"] == ["kb", "worker"]
    assert str(services["worker"]["deploy"]["replicas"]).startswith("${WORKERS")
    assert services["api"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {"kb-data", "pg-data"} <= compose["volumes"].keys()


def test_dockerfile_is_multi_stage_make_install_non_root_with_a_health_check():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.M)
    assert stages == ["build", "run"]
    assert re.search(r"^RUN make install PY=python3.11 GPU=\$\{GPU\}", text, re.M)
    assert re.search(r"^ARG GPU=$", text, re.M)  # CPU unless GPU=1
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    assert re.search(r'^VOLUME \["/data"\]', text, re.M)
    health = re.search(r"^HEALTHCHECK .*\n(.*\n)*?\s+CMD (.*)$", text, re.M)
    assert health and "/healthz" in health.group(2)
    assert f"API_PORT={API_PORT}" in text
    assert "postgresql-client" in text  # pg_dump for kb backup
    # everything the image copies exists, and the top level is the fixed one
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / src).exists(), src
