"""The python code blocks of the docs pages, for the tests that run them."""

import re

from tests.paths import REPO

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: str, section: str | None = None) -> list[str]:
    """The ```python blocks of ``docs/<page>`` (or of the README), or of its ``## <section>`` only."""
    text = (REPO / "README.md" if page == "README.md" else REPO / "docs" / page).read_text()
    if section is not None:
        text = text.split(f"\n## {section}\n")[1].split("\n## ")[0]
    return BLOCK.findall(text)
