"""docker-compose.yml checked statically (tests/integration/test_compose_docker.py runs it).

Images pinned (the official defaults of the image variables that `make images` sets for the offline
set), healthchecks everywhere, mounted paths exist, environment names are the configuration's, and
every command a service runs parses against the CLI / the Glue job's arguments.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import click
import pytest
import yaml

from recsys.cli import cli
from recsys.core.config import SETTINGS

SETTING_NAMES = {s.env for s in SETTINGS}

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROJECT_IMAGE = "recsys:"
IMAGE_VARIABLE = re.compile(r"^\$\{(\w+):-([^}]+)\}$")
IMAGES_SCRIPT = (REPO / "docker" / "images.sh").read_text()
BUILD_OUTPUTS = {"./build"}  # made by `make lambda-zip` before `docker compose up`
# variables read by third-party software inside the containers, not by recsys
FOREIGN_ENV = {
    "SERVICES",
    "LOCALSTACK_AUTH_TOKEN",
    "LAMBDA_DOCKER_NETWORK",
    "MYSQL_ALLOW_EMPTY_PASSWORD",
    "POSTGRES_HOST_AUTH_METHOD",
    "DISABLE_SSL",
    "PYTHONPATH",
}
EXTRA_RECSYS_ENV: set[str] = set()


def _env(service: dict) -> dict:
    env = service.get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def _default_image(service: dict) -> str:
    """The image compose runs with no variable set: the default of ${VAR:-image}, or the literal."""
    match = IMAGE_VARIABLE.match(service["image"])
    return match.group(2) if match else service["image"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_is_pinned(name):
    image = _default_image(SERVICES[name])
    repo, _, tag = image.rpartition(":")
    assert repo and tag and tag != "latest", f"{name}: image {image!r} must carry a fixed tag"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_healthcheck(name):
    check = SERVICES[name].get("healthcheck", {})
    assert check.get("test"), f"{name} has no healthcheck"


@pytest.mark.parametrize("name", sorted(n for n in SERVICES if n != "glue"))
def test_offline_image_set_covers_every_service(name):
    """Each image is a variable with the official default, and `make images` writes that variable."""
    match = IMAGE_VARIABLE.match(SERVICES[name]["image"])
    assert match, f"{name}: image {SERVICES[name]['image']!r} is not ${{VAR:-official}}"
    variable = match.group(1)
    assert re.search(rf"^{variable}=\$\w+$", IMAGES_SCRIPT, re.M), f"docker/images.sh does not set {variable}"


def test_project_image_owns_its_state_dir_before_the_volume_is_mounted():
    """A new named volume takes the ownership of the image's directory: it must be recsys's, not root's."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"chown recsys:recsys /var/lib/recsys", dockerfile)
    assert dockerfile.index("chown recsys:recsys /var/lib/recsys") < dockerfile.index("USER recsys")
    workdirs = re.findall(r"^WORKDIR (\S+)", dockerfile, re.M)
    assert workdirs[-1] == "/var/lib/recsys", "commands run where recsys can write (train writes reports/)"
    state = {
        m.split(":")[1]
        for service in SERVICES.values()
        for m in service.get("volumes", [])
        if m.startswith("recsys-state:")
    }
    assert state == {"/var/lib/recsys"}


def test_localstack_is_token_free_tag_and_passes_token_through():
    image = _default_image(SERVICES["localstack"])
    version = tuple(int(p) for p in image.rsplit(":", 1)[1].split("."))
    assert version <= (4, 14, 0), "tags after 4.14.0 need LOCALSTACK_AUTH_TOKEN"
    assert "LOCALSTACK_AUTH_TOKEN" in _env(SERVICES["localstack"])
    assert "moto" in SERVICES["moto"]["profiles"]


def test_mounted_paths_exist_and_volumes_are_named():
    declared = set(COMPOSE.get("volumes", {}))
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists() or source in BUILD_OUTPUTS, f"{name}: {source} missing"
            elif not source.startswith("/"):
                assert source in declared, f"{name}: volume {source} not declared"


def test_environment_names_match_configuration():
    known = SETTING_NAMES | FOREIGN_ENV | EXTRA_RECSYS_ENV
    for name, service in SERVICES.items():
        if name in {"mysql", "postgres", "moto"}:
            continue
        unknown = {k for k in _env(service) if k not in known and not k.startswith("RECSYS_")}
        assert not unknown, f"{name}: unknown environment names {unknown}"
        recsys_unknown = {k for k in _env(service) if k.startswith("RECSYS_") and k not in known}
        assert not recsys_unknown, f"{name}: {recsys_unknown} are not settings"


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if _default_image(s).startswith(PROJECT_IMAGE)))
def test_project_service_command_parses(name):
    args = list(SERVICES[name].get("command", []))
    if args == ["--help"]:
        return
    if SERVICES[name].get("entrypoint"):  # python3 -m <module>: the module must exist
        entry = SERVICES[name]["entrypoint"]
        assert entry[:2] == ["python3", "-m"] and importlib.util.find_spec(entry[2]), entry
        return
    command = cli.get_command(click.Context(cli), args[0])
    assert command is not None, f"{name}: unknown recsys command {args[0]}"
    command.make_context(args[0], args[1:])  # raises on an unknown option


def test_glue_command_uses_the_job_arguments():
    script = REPO / "glue" / "etl_job.py"
    tree = ast.parse(script.read_text())
    job_args = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "JOB_ARGUMENTS"
    )
    command = SERVICES["glue"]["command"]
    script_at = next(i for i, part in enumerate(command) if part.endswith("glue/etl_job.py"))
    given = {part[2:] for part in command[script_at + 1 :] if part.startswith("--")}
    assert given - {"JOB_NAME"} <= set(job_args), f"unknown job arguments {given - set(job_args)}"
    required = {k for k, v in job_args.items() if v is None}
    assert required <= given, f"missing required job arguments {required - given}"


def test_localstack_init_hooks_exist_and_are_executable():
    hooks = list((REPO / "localstack" / "init" / "ready.d").glob("*.sh"))
    assert hooks, "localstack/init/ready.d has no hook"
    for hook in hooks:
        assert hook.stat().st_mode & 0o111, f"{hook} is not executable"
        assert "recsys.resources" in hook.read_text()


# One-off services (profiles tools, etl) exit when done; everything else runs until stopped.
ONE_OFF_PROFILES = {"tools", "etl"}
# Credential providers that hadoop-aws (3.3 and 3.4, Glue 5.0's) ships; there is no
# org.apache.hadoop.fs.s3a.EnvironmentVariableCredentialsProvider.
HADOOP_AWS_PROVIDERS = {
    "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider",
    "org.apache.hadoop.fs.s3a.AnonymousAWSCredentialsProvider",
    "org.apache.hadoop.fs.s3a.auth.IAMInstanceCredentialsProvider",
    "org.apache.hadoop.fs.s3a.auth.AssumedRoleCredentialProvider",
}


@pytest.mark.parametrize(
    "name", sorted(n for n, s in SERVICES.items() if not ONE_OFF_PROFILES & set(s.get("profiles", [])))
)
def test_long_running_services_restart(name):
    if name == "moto-resources":  # a one-off the firehose service waits for (completed successfully)
        assert SERVICES["firehose"]["depends_on"][name]["condition"] == "service_completed_successfully"
        return
    assert SERVICES[name].get("restart") in {"unless-stopped", "always", "on-failure"}, f"{name} needs a restart policy"


def test_firehose_waits_for_its_delivery_stream():
    command = SERVICES["firehose"]["command"]
    assert "--wait-for-stream" in command and float(command[command.index("--wait-for-stream") + 1]) > 0


def _conf(command: list[str]) -> dict[str, str]:
    return dict(command[i + 1].split("=", 1) for i, part in enumerate(command) if part == "--conf")


def test_glue_s3a_credentials_provider_exists_in_hadoop_aws():
    conf = _conf(SERVICES["glue"]["command"])
    provider = conf["spark.hadoop.fs.s3a.aws.credentials.provider"]
    assert provider in HADOOP_AWS_PROVIDERS, f"{provider} is not a hadoop-aws credentials provider"
    if provider.endswith("SimpleAWSCredentialsProvider"):
        assert conf.get("spark.hadoop.fs.s3a.access.key") and conf.get("spark.hadoop.fs.s3a.secret.key")


def test_glue_brings_its_own_mysql_driver():
    """The Glue 5.0 image does not ship MySQL Connector/J: the job's default driver comes with --packages."""
    command = SERVICES["glue"]["command"]
    script = REPO / "glue" / "etl_job.py"
    job_args = next(
        ast.literal_eval(node.value)
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "JOB_ARGUMENTS"
    )
    assert job_args["jdbc_driver"] == "com.mysql.cj.jdbc.Driver"
    packages = command[command.index("--packages") + 1].split(",")
    assert any(re.fullmatch(r"com\.mysql:mysql-connector-j:\d+\.\d+\.\d+", p) for p in packages), packages


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_ports_are_loopback_only(name):
    for port in SERVICES[name].get("ports", []):
        assert port.startswith("127.0.0.1:"), f"{name}: {port} is not bound to loopback"


def test_api_runs_on_loopback_and_the_web_page_calls_it():
    api, web = SERVICES["api"], SERVICES["web"]
    assert api["command"][0] == "api" and api["ports"] == ["127.0.0.1:${API_PORT:-8000}:8000"]
    assert _env(web)["RECSYS_API_URL"] == "http://api:8000" and "api" in web["depends_on"]
    assert "/version" in " ".join(api["healthcheck"]["test"])
