"""Solve the arena's proof-of-work check as a browser does, with the standard library only.

The benchmark clients talk to ``deploy/dev.py run`` as new visitors do, so a new session must
pass the check before its first battle (``GET /api/v1/challenge``, then send the answer as
``altcha`` with the battle). The bench scripts run under any Python 3.11, without the project's
virtual environment, hence no ``altcha`` import: the protocol is one SHA-256 search.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


def solve(challenge: dict[str, Any]) -> str | None:
    """The answer payload for ``GET /api/v1/challenge``'s JSON, or None when none is needed."""
    if not challenge.get("required"):
        return None
    salt, target = str(challenge["salt"]), str(challenge["challenge"])
    if challenge.get("algorithm", "SHA-256") != "SHA-256":
        raise ValueError(f"unsupported algorithm {challenge['algorithm']!r}")
    for number in range(int(challenge["maxNumber"]) + 1):
        if hashlib.sha256(f"{salt}{number}".encode()).hexdigest() == target:
            answer = {
                "algorithm": "SHA-256",
                "challenge": target,
                "number": number,
                "salt": salt,
                "signature": challenge["signature"],
            }
            return base64.b64encode(json.dumps(answer).encode()).decode()
    raise ValueError("the challenge has no solution")
