"""docs/aws.md's walkthrough, walked: every shell command block in order, against the tfvars files,
the root variables' defaults and validations, and the Makefile targets that build the zips.

Each ``terraform plan/apply`` is evaluated for the phases it switches on: the files it names exist,
the variables it sets are declared, the phase dependencies hold, and every zip an enabled phase needs
was built by an earlier ``make`` command of the page (no hidden step). Applies never drop a phase
that an earlier apply enabled (that would destroy it), and the phases come on in order.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from test_terraform import PHASES, TF, load_hcl, parse_dir

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGH = ROOT / "docs" / "aws.md"
ORDER = ["enable_etl", "enable_vector_db", "enable_streaming", "enable_api"]
# the zip each phase deploys, the make target that builds it, and the variable defaulting to it
ZIP_OF_PHASE = {"enable_streaming": ("lambda-zip", "build/lambda.zip"), "enable_api": ("api-zip", "build/api.zip")}
NEEDS = {
    "enable_vector_db": ["enable_etl"],
    "enable_streaming": ["enable_etl", "enable_vector_db"],
    "enable_api": ["enable_etl", "enable_vector_db"],
}


def shell_commands(markdown: str) -> list[str]:
    """The commands of every ```bash block, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        for raw_line in block.replace("\\\n", " ").splitlines():
            line = raw_line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _terraform_invocations(command: str) -> list[list[str]]:
    words = shlex.split(command.replace("(", " ").replace(")", " ").replace("&&", " ; "))
    found, current = [], None
    for word in words:
        if word in ("terraform", "tflocal"):
            current = [word]
            found.append(current)
        elif word in (";", "|"):
            current = None
        elif current is not None:
            current.append(word)
    return found


def _make_targets(command: str) -> list[str]:
    words = shlex.split(command.replace("(", " ").replace(")", " ").replace("&&", " ; "))
    targets, in_make = [], False
    for word in words:
        if word == "make":
            in_make = True
        elif word in (";", "|") or word.startswith("-"):
            in_make = word.startswith("-") and in_make
        elif in_make:
            targets.append(word)
    return targets


def _value(text: str):
    return {"true": True, "false": False}.get(text, text)


def walkthrough_problems(markdown: str) -> list[str]:
    """Every step of the page that would fail or needs something the page did not do."""
    root = parse_dir(TF)
    defaults = {name: spec.get("default") for name, spec in root.variables.items()}
    makefile = (ROOT / "Makefile").read_text()
    built: set[str] = set()
    tfvars: dict = {}
    last_plan: dict | None = None
    previous: set[str] = set()
    enabled_order: list[str] = []
    problems = []
    for command in shell_commands(markdown):
        for target in _make_targets(command):
            if not re.search(rf"^{re.escape(target)}:", makefile, re.M):
                problems.append(f"`{command}`: the Makefile has no target {target}")
            built.add(target)
        if re.search(r"\bcp terraform\.tfvars\.example terraform\.tfvars\b", command):
            tfvars = load_hcl(TF / "terraform.tfvars.example")
        for words in _terraform_invocations(command):
            tool, action, args = words[0], (words[1] if len(words) > 1 else ""), words[2:]
            if action not in ("plan", "apply", "destroy"):
                continue
            values = {**defaults, **tfvars}
            takes_value = {"-var", "-var-file", "-out", "-target"}
            plan_file = next(
                (a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in takes_value)),
                None,
            )
            if action == "apply" and plan_file is not None:
                if last_plan is None:
                    problems.append(f"`{command}`: applies a plan file no earlier plan wrote")
                    continue
                values = last_plan
            iterator = iter(args)
            for word in iterator:
                arg = "-var=" + next(iterator) if word == "-var" else word
                if arg.startswith("-var-file="):
                    path = TF / arg.split("=", 1)[1]
                    if not path.is_file():
                        problems.append(f"`{command}`: terraform/{path.name} does not exist")
                        continue
                    values.update(load_hcl(path))
                elif arg.startswith("-var="):
                    name, _, text = arg[len("-var=") :].partition("=")
                    if name not in root.variables:
                        problems.append(f"`{command}`: -var {name} is not a root variable")
                    values[name] = _value(text)
            if action == "plan":
                last_plan = values
            if action == "destroy" or tool != "terraform":
                continue
            on = {flag for flag in ORDER if values.get(flag) is True}
            for flag in on:
                missing = [need for need in NEEDS.get(flag, []) if need not in on]
                if missing:
                    problems.append(f"`{command}`: {flag} without {missing} fails the variable validation")
                if flag in ZIP_OF_PHASE:
                    target, _ = ZIP_OF_PHASE[flag]
                    if target not in built:
                        problems.append(f"`{command}`: {flag} needs `make {target}` first (the zip check stops plan)")
            if previous - on:
                problems.append(f"`{command}`: switches off {sorted(previous - on)}, which destroys them")
            enabled_order += [flag for flag in ORDER if flag in on and flag not in enabled_order]
            previous = on
    if enabled_order != ORDER:
        problems.append(f"the phases come on in the order {enabled_order}, not {ORDER}")
    return problems


def test_the_aws_walkthrough_applies_each_phase_in_order_without_a_hidden_step():
    assert not walkthrough_problems(WALKTHROUGH.read_text()), "\n".join(walkthrough_problems(WALKTHROUGH.read_text()))


def test_the_zips_the_walkthrough_builds_are_the_ones_terraform_deploys():
    root = parse_dir(TF)
    makefile = (ROOT / "Makefile").read_text()
    for flag, (target, path) in ZIP_OF_PHASE.items():
        assert flag in PHASES.values()
        assert re.search(rf"^{target}:.*## .*\({re.escape(path)}\)", makefile, re.M), f"make {target} writes {path}"
    assert "build/lambda.zip" in root.locals["lambda_zip_path"] and "build/api.zip" in root.locals["api_zip_path"]


def test_the_walker_catches_the_old_phase_3_step_and_a_missing_tfvars_file():
    """The walkthrough as it was: phase 3 applied all-phases.tfvars (which enables the API) after
    `make lambda-zip` only, and the LocalStack section named a localstack.tfvars that never existed."""
    old = """```bash
cp terraform.tfvars.example terraform.tfvars
terraform apply -var enable_vector_db=true
(cd .. && make lambda-zip)
terraform apply -var-file=all-phases.tfvars    # = -var enable_vector_db=true -var enable_streaming=true
(cd .. && make api-zip)
terraform apply -var-file=all-phases.tfvars
tflocal plan  -var-file=localstack.tfvars
```"""
    problems = "\n".join(walkthrough_problems(old))
    assert "enable_api needs `make api-zip` first" in problems
    assert "terraform/localstack.tfvars does not exist" in problems
    dropped = "```bash\nterraform apply -var-file=streaming.tfvars\nterraform apply -var enable_vector_db=true\n```"
    assert "needs `make lambda-zip` first" in "\n".join(walkthrough_problems(dropped))
    assert "switches off ['enable_streaming']" in "\n".join(walkthrough_problems(dropped))
