#!/usr/bin/env python3
"""Checks the team deployment: docker-compose.yml, .env.example, Dockerfile, docker/mlflow.Dockerfile
and .dockerignore. Registered with CTest (label `deploy`), one test per check:

    compose_config_test.py config        `docker-compose config` with .env.example: services, health
                                         checks, volumes, stores, dependencies, ports, host checks
    compose_config_test.py required      a missing or empty required credential stops compose with its
                                         `${VAR:?message}`; every variable is documented in .env.example
    compose_config_test.py dockerfiles   the petal image is built by exactly scripts/setup.sh, whatever
                                         COPY names exists and is in the build context; the MLflow
                                         image pins the MLflow that scripts/requirements.txt pins

Docker Compose v2 resolves the files without a Docker engine: .venv/bin/docker-compose, installed by
scripts/setup.sh (scripts/install-compose.sh), or the command in $PETAL_COMPOSE. Exit status 0: pass,
1: fail (every failed expectation is printed), 77: skipped (no docker-compose build for this CPU).
"""

import fnmatch
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SKIP = 77

SERVICES = {"postgres", "minio", "minio-init", "mlflow", "petal"}
LONG_RUNNING = {"postgres", "minio", "mlflow"}

# ${NAME}, ${NAME:-default}, ${NAME:?message} and the rest of compose's forms; $${...} is an escape.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}")


class Skip(Exception):
    pass


class Checker:
    """Collects failed expectations so that one run reports all of them."""

    def __init__(self):
        self.failures = []

    def expect(self, condition, message):
        if not condition:
            self.failures.append(message)
        return bool(condition)


# ---------------------------------------------------------------------------------------------
# docker-compose


def compose_command():
    if os.environ.get("PETAL_COMPOSE"):
        return shlex.split(os.environ["PETAL_COMPOSE"])
    installed = ROOT / ".venv/bin/docker-compose"
    if installed.exists():
        return [str(installed)]
    if platform.machine() not in ("x86_64", "AMD64"):
        raise Skip(f"no docker-compose for {platform.machine()} (scripts/install-compose.sh installs the linux-amd64 one)")
    raise RuntimeError(f"{installed} is missing: run scripts/setup.sh (it runs scripts/install-compose.sh)")


def compose_variables():
    """{name: (operator, {arguments})} for every variable docker-compose.yml interpolates (comments aside);
    a required variable's operator is ":?" and its arguments are its messages."""
    found = {}
    text = "\n".join(l for l in COMPOSE_FILE.read_text().splitlines() if not l.lstrip().startswith("#"))
    for match in VARIABLE.finditer(text):
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        if name not in found or (operator == ":?" and found[name][0] != ":?"):
            found[name] = (operator, set())
        if operator == found[name][0]:
            found[name][1].add(argument.strip())
    return found


def read_env_file(path):
    values = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise RuntimeError(f"{path}:{number}: not NAME=value: {line}")
        name, value = line.split("=", 1)
        values[name.strip()] = value.strip()
    return values


def run_compose_config(env_file):
    """`docker-compose config --format json` with only env_file's values: the shell's environment
    would win over the file, so compose's own variables and every variable the file uses are removed."""
    names = set(compose_variables())
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith(("COMPOSE_", "DOCKER_"))}
    command = compose_command() + ["--project-directory", str(ROOT), "-f", str(COMPOSE_FILE),
                                   "--env-file", str(env_file), "config", "--format", "json"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def flags_of(command):
    """`--name=value` and `--name value` arguments as {name: value} (value None for a bare switch)."""
    flags = {}
    i = 0
    while i < len(command):
        arg = command[i]
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg[2:].split("=", 1)
            elif i + 1 < len(command) and not command[i + 1].startswith("-"):
                name, value = arg[2:], command[i + 1]
                i += 1
            else:
                name, value = arg[2:], None
            flags[name] = value
        i += 1
    return flags


def healthcheck_test(service):
    health = service.get("healthcheck") or {}
    if health.get("disable"):
        return ""
    test = health.get("test") or []
    if isinstance(test, str):
        return test
    if test and test[0] == "NONE":
        return ""
    return " ".join(test[1:]) if test and test[0] in ("CMD", "CMD-SHELL") else " ".join(test)


def mounts(service, kind):
    return [m for m in service.get("volumes") or [] if m.get("type") == kind]


def check_config(c):
    result = run_compose_config(ENV_EXAMPLE)
    if not c.expect(result.returncode == 0, f"docker-compose config with .env.example exited {result.returncode}:\n{result.stderr}"):
        return
    config = json.loads(result.stdout)
    example = read_env_file(ENV_EXAMPLE)
    services = config.get("services", {})
    c.expect(set(services) == SERVICES, f"services are {sorted(services)}, expected {sorted(SERVICES)}")
    if not SERVICES <= set(services):
        return
    postgres, minio, init, mlflow, petal = (services[n] for n in ("postgres", "minio", "minio-init", "mlflow", "petal"))
    declared_volumes = set(config.get("volumes") or {})

    # Health checks: what depends_on: service_healthy waits for.
    c.expect("pg_isready" in healthcheck_test(postgres), f"postgres's health check is not pg_isready: {healthcheck_test(postgres)!r}")
    c.expect(re.search(r"mc ready|/minio/health/", healthcheck_test(minio)), f"minio has no health check: {healthcheck_test(minio)!r}")
    server = flags_of(mlflow.get("command") or [])
    port = server.get("port") or "5000"
    c.expect(re.search(rf"(127\.0\.0\.1|localhost):{port}/health\b", healthcheck_test(mlflow)),
             f"mlflow's health check does not ask /health on port {port}: {healthcheck_test(mlflow)!r}")
    c.expect(server.get("host") == "0.0.0.0", f"mlflow server must listen on 0.0.0.0 inside its container, not {server.get('host')!r}")

    # Named volumes where the data live.
    for name, service, target in (("postgres", postgres, "/var/lib/postgresql/data"), ("minio", minio, "/data")):
        volume = [m for m in mounts(service, "volume") if m.get("target") == target]
        c.expect(volume and volume[0].get("source") in declared_volumes,
                 f"{name} keeps {target} in no named volume (mounts: {service.get('volumes')})")

    # The backend store: PostgreSQL, with the postgres service's own credentials.
    backend = server.get("backend-store-uri") or ""
    uri = urlparse(backend)
    pg_env = postgres.get("environment") or {}
    c.expect(uri.scheme.split("+")[0] == "postgresql", f"backend store is not PostgreSQL: {backend!r}")
    # SQLAlchemy picks the driver from the scheme (bare postgresql:// = psycopg 3 since SQLAlchemy
    # 2.1): the MLflow image must install that one.
    driver = uri.scheme.partition("+")[2] or "psycopg"
    package = {"psycopg2": r"psycopg2(-binary)?", "psycopg": r"psycopg(\[[^\]]*\])?"}.get(driver)
    mlflow_build = mlflow.get("build") or {}
    mlflow_dockerfile = Path(mlflow_build.get("context", "")) / mlflow_build.get("dockerfile", "Dockerfile")
    installs = " ".join(a for k, a in dockerfile_instructions(mlflow_dockerfile) if k == "RUN") if mlflow_dockerfile.is_file() else ""
    c.expect(package and re.search(rf"[\s\"']{package}==", installs),
             f"the backend store URI's driver is {driver}, which {mlflow_dockerfile} does not install")
    c.expect(uri.hostname == "postgres" and (uri.port or 5432) == 5432, f"backend store does not name the postgres service: {backend!r}")
    c.expect(uri.username == pg_env.get("POSTGRES_USER") and uri.password == pg_env.get("POSTGRES_PASSWORD"),
             "backend store URI's user or password differs from the postgres service's POSTGRES_USER/POSTGRES_PASSWORD")
    c.expect(uri.path == "/" + str(pg_env.get("POSTGRES_DB")), f"backend store database {uri.path!r} is not POSTGRES_DB {pg_env.get('POSTGRES_DB')!r}")
    c.expect(uri.password == example.get("POSTGRES_PASSWORD"), "the postgres password does not come from the env file")

    # Artifacts: proxied by the server (petal only speaks mlflow-artifacts: URIs), stored in MinIO's bucket.
    destination = urlparse(server.get("artifacts-destination") or "")
    bucket = (init.get("environment") or {}).get("MLFLOW_ARTIFACTS_BUCKET")
    c.expect(destination.scheme == "s3", f"artifacts destination is not s3://: {server.get('artifacts-destination')!r}")
    c.expect(destination.netloc == bucket == example.get("MLFLOW_ARTIFACTS_BUCKET"),
             f"artifacts bucket {destination.netloc!r}, minio-init's bucket {bucket!r}, .env.example's {example.get('MLFLOW_ARTIFACTS_BUCKET')!r} differ")
    for flag in ("default-artifact-root", "no-serve-artifacts", "artifacts-only"):
        c.expect(flag not in server, f"mlflow server has --{flag}: runs would not get the mlflow-artifacts:/ URIs petal uploads through")
    mlflow_env = mlflow.get("environment") or {}
    endpoint = urlparse(mlflow_env.get("MLFLOW_S3_ENDPOINT_URL") or "")
    c.expect(endpoint.hostname == "minio", f"MLFLOW_S3_ENDPOINT_URL does not point at minio: {endpoint.geturl()!r}")
    minio_env = minio.get("environment") or {}
    c.expect(mlflow_env.get("AWS_ACCESS_KEY_ID") == minio_env.get("MINIO_ROOT_USER") and
             mlflow_env.get("AWS_SECRET_ACCESS_KEY") == minio_env.get("MINIO_ROOT_PASSWORD"),
             "mlflow's S3 credentials are not minio's")
    init_script = " ".join((init.get("entrypoint") or []) + (init.get("command") or []))
    c.expect(re.search(r"mc mb (--ignore-existing|-p)\b", init_script), f"minio-init does not create the bucket idempotently: {init_script!r}")
    c.expect("minio:9000" in init_script, "minio-init does not talk to minio:9000")

    # Start order.
    def depends(service, on, condition):
        got = ((services[service].get("depends_on") or {}).get(on) or {}).get("condition")
        c.expect(got == condition, f"{service} depends on {on} with condition {got!r}, expected {condition}")
    depends("minio-init", "minio", "service_healthy")
    depends("mlflow", "postgres", "service_healthy")
    depends("mlflow", "minio", "service_healthy")
    depends("mlflow", "minio-init", "service_completed_successfully")
    depends("petal", "mlflow", "service_healthy")
    for name in LONG_RUNNING:
        c.expect(services[name].get("restart") in ("always", "unless-stopped"), f"{name} has restart {services[name].get('restart')!r}")
    c.expect(init.get("restart") in (None, "no"), f"minio-init, a one-shot, has restart {init.get('restart')!r}")

    # Ports: MLflow published on the loopback by default; the database never.
    c.expect(not postgres.get("ports"), f"postgres publishes ports: {postgres.get('ports')}")
    published = [p for p in mlflow.get("ports") or [] if str(p.get("target")) == str(port)]
    c.expect(published, f"mlflow's port {port} is not published")
    for name, service in services.items():
        for p in service.get("ports") or []:
            c.expect(p.get("host_ip") == "127.0.0.1", f"{name} publishes {p.get('target')} on {p.get('host_ip') or 'every interface'}, not 127.0.0.1")

    # petal: the tracking URI names the mlflow service, whose --allowed-hosts accepts that Host.
    petal_env = petal.get("environment") or {}
    tracking = urlparse(petal_env.get("MLFLOW_TRACKING_URI") or "")
    c.expect(tracking.scheme == "http" and tracking.hostname == "mlflow" and str(tracking.port) == str(port),
             f"petal's MLFLOW_TRACKING_URI {tracking.geturl()!r} is not http://mlflow:{port}")
    allowed = [h.strip() for h in (server.get("allowed-hosts") or "").split(",") if h.strip()]
    hosts = [f"mlflow:{port}"] + [f"{h}:{p.get('published')}" for p in published for h in ("127.0.0.1", "localhost")]
    for host in hosts:
        c.expect(any(fnmatch.fnmatch(host, a) if "*" in a else host == a for a in allowed),
                 f"mlflow's --allowed-hosts {allowed} refuses Host {host}: its clients would get 403")

    # petal's state, cache and data.
    c.expect((petal.get("build") or {}).get("context") == str(ROOT) and (petal.get("build") or {}).get("dockerfile") == "Dockerfile",
             f"petal is not built from the repository's Dockerfile: {petal.get('build')}")
    workdir = dockerfile_workdir(ROOT / "Dockerfile")
    state = [m for m in mounts(petal, "volume") if m.get("target") == f"{workdir}/.petal"]
    c.expect(state and state[0].get("source") in declared_volumes,
             f"petal's {workdir}/.petal (found from the Dockerfile's WORKDIR) is not a named volume: {petal.get('volumes')}")
    datasets = petal_env.get("PETAL_DATASETS")
    data = [m for m in mounts(petal, "bind") if m.get("target") == datasets]
    c.expect(data and data[0].get("read_only") is True, f"the datasets folder is not mounted read-only at PETAL_DATASETS={datasets!r}")
    c.expect(petal.get("command"), "petal has no default command")

    for name in ("mlflow", "petal"):
        build = services[name].get("build") or {}
        dockerfile = Path(build.get("context", "")) / build.get("dockerfile", "Dockerfile")
        c.expect(dockerfile.is_file(), f"{name}'s Dockerfile {dockerfile} does not exist")


# ---------------------------------------------------------------------------------------------
# required variables and .env.example


def git(*args):
    """git's answer in the repository, or None where git is not installed (a bare build context)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    except OSError:
        return None


def check_required(c):
    variables = compose_variables()
    required = {name: messages for name, (operator, messages) in variables.items() if operator == ":?"}
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        c.expect(name in required, f"{name} is not required (${{{name}:?message}}) in docker-compose.yml")
    # A credential with a default in one place would start that service with the default.
    text = "\n".join(l for l in COMPOSE_FILE.read_text().splitlines() if not l.lstrip().startswith("#"))
    for match in VARIABLE.finditer(text):
        if match.group(1) in required:
            c.expect(match.group(2) == ":?", f"{match.group(0)}: {match.group(1)} is required elsewhere, here it is not")
    example_text = ENV_EXAMPLE.read_text()
    example = read_env_file(ENV_EXAMPLE)
    for name in variables:
        c.expect(name in example, f"{name} is used by docker-compose.yml but not set in .env.example")

    with tempfile.TemporaryDirectory() as tmp:
        for name, messages in sorted(required.items()):
            c.expect(all(messages), f"a ${{{name}:?}} has no message")
            for case, value in (("missing", None), ("empty", "")):
                lines = [l for l in example_text.splitlines() if not re.match(rf"\s*{name}\s*=", l)]
                if value is not None:
                    lines.append(f"{name}={value}")
                env_file = Path(tmp) / f"{name}.{case}.env"
                env_file.write_text("\n".join(lines) + "\n")
                result = run_compose_config(env_file)
                c.expect(result.returncode != 0, f"docker-compose config with {name} {case} exited 0")
                c.expect(any(f"required variable {name} is missing a value: {m}" in result.stderr for m in messages if m),
                         f"with {name} {case}, compose does not print a message of its ${{{name}:?message}}:\n{result.stderr}")

    # The file that holds the real values stays out of git and out of images.
    ignored = git("check-ignore", "-q", ".env")
    if ignored and ignored.returncode in (0, 1):  # 128: not a git checkout
        c.expect(ignored.returncode == 0, ".env is not ignored by git")
    c.expect(dockerignore_excludes(".env"), ".env is not excluded by .dockerignore")


# ---------------------------------------------------------------------------------------------
# Dockerfiles and the build context


def dockerfile_instructions(path):
    """[(INSTRUCTION, arguments)] with comments dropped and continuation lines joined."""
    instructions, pending = [], ""
    for line in Path(path).read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def dockerfile_workdir(path):
    workdirs = [args for keyword, args in dockerfile_instructions(path) if keyword == "WORKDIR"]
    return workdirs[-1].rstrip("/") if workdirs else ""


def copy_sources(arguments):
    if arguments.startswith("["):
        parts = json.loads(arguments)
    else:
        parts = shlex.split(arguments)
    parts = [p for p in parts if not p.startswith("--")]
    return parts[:-1]


def dockerignore_patterns():
    path = ROOT / ".dockerignore"
    patterns = []
    for line in path.read_text().splitlines() if path.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((re.compile(regex + r"\Z"), negated))
    return patterns


def dockerignore_excludes(relative, patterns=None):
    """Whether Docker leaves `relative` (or a folder above it) out of the build context: the last
    matching pattern decides, as in Docker's own matcher."""
    patterns = dockerignore_patterns() if patterns is None else patterns
    parts = Path(relative).parts
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for regex, negated in patterns:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def check_dockerfiles(c):
    dockerfile = ROOT / "Dockerfile"
    instructions = dockerfile_instructions(dockerfile)
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    c.expect(froms == ["debian:bookworm"], f"the petal image is not built FROM debian:bookworm alone: {froms}")
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    c.expect(runs == ["scripts/setup.sh"], f"the petal image's build steps are not exactly `RUN scripts/setup.sh`: {runs}")
    readme = (ROOT / "README.md").read_text()
    c.expect(re.search(r"^scripts/setup\.sh && build/petal run ", readme, re.M),
             "README.md's front-door command no longer starts with scripts/setup.sh")
    setup = ROOT / "scripts/setup.sh"
    c.expect(setup.is_file() and os.access(setup, os.X_OK), "scripts/setup.sh is missing or not executable")

    patterns = dockerignore_patterns()
    for keyword, args in instructions:
        if keyword in ("COPY", "ADD"):
            c.expect("--from" not in args, f"{keyword} {args}: copies from another stage or image")
            for source in copy_sources(args):
                c.expect((ROOT / source).exists(), f"{keyword} {args}: {source} does not exist")
                c.expect(source in (".", "./") or not dockerignore_excludes(source, patterns),
                         f"{keyword} {args}: {source} is excluded by .dockerignore")
    # Local state stays out of the context ...
    for local in ("build", "build/petal", "build-charts", ".venv", ".petal", "weights", ".env", ".git", "tests/__pycache__/x.pyc"):
        c.expect(dockerignore_excludes(local, patterns), f".dockerignore does not exclude {local}")
    # ... and every file of the repository (what setup.sh builds from) is in it.
    listed = git("ls-files", "-z")
    tracked = [f for f in listed.stdout.split("\0") if f] if listed and listed.returncode == 0 else []
    needed = set(tracked) | {"scripts/setup.sh", "scripts/install-compose.sh", "scripts/requirements.txt",
                             "scripts/requirements-no-deps.txt", "CMakeLists.txt",
                             "tests/CMakeLists.txt", "bench/CMakeLists.txt"}
    left_out = sorted(f for f in needed if dockerignore_excludes(f, patterns))
    c.expect(not left_out, f".dockerignore leaves files the build needs out of the context: {left_out[:10]}")

    # The MLflow image: the MLflow petal is tested against, and the drivers for its stores.
    requirements = (ROOT / "scripts/requirements.txt").read_text()
    pinned = re.search(r"^mlflow(?:\[[^\]]*\])?==(\S+)", requirements, re.M)
    mlflow_file = ROOT / "docker/mlflow.Dockerfile"
    mlflow_instructions = dockerfile_instructions(mlflow_file)
    c.expect(any(k == "FROM" and a.startswith("python:") for k, a in mlflow_instructions), "docker/mlflow.Dockerfile is not FROM python:")
    args = dict(a.split("=", 1) for k, a in mlflow_instructions if k == "ARG" and "=" in a)
    install = " ".join(a for k, a in mlflow_instructions if k == "RUN")
    for name, value in args.items():
        install = install.replace("${" + name + "}", value).replace("$" + name, value)
    installed = re.search(r"\bmlflow(?:\[[^\]]*\])?==([0-9][^\s\"']*)", install)
    c.expect(pinned and installed and installed.group(1) == pinned.group(1),
             f"docker/mlflow.Dockerfile installs mlflow {installed.group(1) if installed else None}, "
             f"scripts/requirements.txt pins {pinned.group(1) if pinned else None}")
    for package in ("psycopg2-binary", "boto3"):
        c.expect(re.search(rf"\b{package}==\d", install), f"docker/mlflow.Dockerfile does not install a pinned {package}")
    for keyword, args_text in mlflow_instructions:
        if keyword in ("COPY", "ADD"):
            for source in copy_sources(args_text):
                c.expect((ROOT / "docker" / source).exists(), f"docker/mlflow.Dockerfile: {keyword} {source} does not exist")


CHECKS = {"config": check_config, "required": check_required, "dockerfiles": check_dockerfiles}


def main(argv):
    names = argv[1:] or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"usage: {argv[0]} [{'|'.join(CHECKS)}]...", file=sys.stderr)
        return 2
    c = Checker()
    try:
        for name in names:
            CHECKS[name](c)
    except Skip as skip:
        print(f"skipped: {skip}")
        return SKIP
    except RuntimeError as error:
        c.failures.append(str(error))
    for failure in c.failures:
        print(f"FAIL: {failure}")
    if c.failures:
        return 1
    print(f"deploy: {', '.join(names)}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
