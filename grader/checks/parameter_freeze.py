"""Kind ``parameter_freeze``: which parameters a function leaves trainable on a grader-built model.

The sandbox builds ``grader.models.build_transfer_model(name)`` for each case
(``params.cases: [{model: tiny_resnet, args: [2]}]``), calls the student's
function on it and reports ``requires_grad`` per parameter name; the parent
builds the same model, calls the reference, and compares name by name.
"""
from __future__ import annotations

from grader.checks import register
from grader.checks.options import REQUIRED, Option
from grader.checks.base import COMMON_FINDINGS, Check, Context, Outcome, reply_failure
from grader.models import TRANSFER_MODELS, build_transfer_model
from grader.rubric.model import CheckSpec

FINDINGS = ("wrong_frozen",)


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def counting_every_child(model_name: str, n: int) -> dict[str, bool]:
    """The usual mistake: the last n children counted with the parameterless ones (ReLU, pooling)."""
    model = build_transfer_model(model_name)
    children = list(model.named_children())
    trainable = {name for name, _ in children[len(children) - n:]} if n > 0 else set()
    return {name: name.split(".", 1)[0] in trainable for name, _ in model.named_parameters()}


@register
class ParameterFreezeCheck(Check):
    kind = "parameter_freeze"
    findings = COMMON_FINDINGS + FINDINGS
    options = (
        Option("cases", {"type": "array", "minItems": 1, "items": {
                   "type": "object", "required": ["model"], "additionalProperties": False,
                   "properties": {"model": {"type": "string"}, "args": {"type": "array"}}}},
               "models to freeze and the target's further arguments: [{model: tiny_resnet, args: [2]}]", REQUIRED),
    )

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec)
        for i, case in enumerate(cls.params_of(spec)["cases"] or []):
            if not isinstance(case, dict) or case.get("model") not in TRANSFER_MODELS:
                problems.append((f"params.cases[{i}].model", f"model must be one of {', '.join(sorted(TRANSFER_MODELS))}"))
        return problems

    def run(self, ctx: Context) -> Outcome:
        reference = getattr(ctx.reference, self.spec.reference)
        cases = self.params["cases"]
        for case in cases:
            args = list(case.get("args", []))
            call = f"{self.spec.target}({case['model']}, {', '.join(map(repr, args))})"
            reply = ctx.request(self.spec, {"op": "freeze_probe", "target": self.spec.target, "model": case["model"], "args": args})
            if not reply.ok:
                return reply_failure(reply, f"Calling {call}")
            got = reply.value.get("requires_grad", {})
            model = build_transfer_model(case["model"])
            reference(model, *args)
            expected = {name: p.requires_grad for name, p in model.named_parameters()}
            if got == expected:
                continue
            frozen_wrongly = [n for n, e in expected.items() if e and not got.get(n, False)]
            trainable_wrongly = [n for n, e in expected.items() if not e and got.get(n, False)]
            parts = []
            if frozen_wrongly:
                parts.append(f"frozen but should be trainable: {_names(frozen_wrongly)}")
            if trainable_wrongly:
                parts.append(f"trainable but should be frozen: {_names(trainable_wrongly)}")
            message = f"After {call} on a small {case['model']} model, these parameters are " + "; ".join(parts) + "."
            if len(args) == 1 and isinstance(args[0], int) and got == counting_every_child(case["model"], args[0]):
                message += (" You counted the last children including those without parameters (ReLU, pooling, "
                            "dropout); count only the children that have parameters.")
            return Outcome.fail("wrong_frozen", message)
        return Outcome(passed=True, feedback=[f"The right parameters are frozen in {len(cases)} case(s)."])
