"""`push_to_hub=<repo id>`: upload an exported folder with huggingface_hub, or stop before any work if it cannot.

A merge and a GGUF conversion take minutes on large models; finding out afterwards that the Hub is unreachable
(offline mode, no network) or that no token is set would waste them, so check_reachable runs first.
"""

import logging
import re
from pathlib import Path

from lft.config.errors import ConfigError

log = logging.getLogger("lft")
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
TIMEOUT_S = 5


def check_reachable(repo_id: str) -> None:
    """One short request to the Hub and a token check; a ConfigError naming the fix when either fails."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import get_session

    if not REPO_ID.match(repo_id):
        raise ConfigError(f"push_to_hub={repo_id!r}: give a Hub repo id, <user or organisation>/<name>.")
    if constants.is_offline_mode():
        raise ConfigError(f"push_to_hub={repo_id}: HF_HUB_OFFLINE=1 is set, so nothing can be uploaded. Unset it, or "
                          "export without push_to_hub and upload the folder later (`hf upload <repo id> <out>`).")
    try:
        get_session().head(constants.ENDPOINT, timeout=TIMEOUT_S)
    except Exception as err:  # httpx's connect errors, timeouts, proxies: all mean the same thing here
        raise ConfigError(f"push_to_hub={repo_id}: the Hub ({constants.ENDPOINT}) cannot be reached "
                          f"({type(err).__name__}). Check the network, or export without push_to_hub and upload "
                          "the folder later (`hf upload <repo id> <out>`).") from None
    try:
        HfApi().whoami()
    except Exception as err:
        raise ConfigError(f"push_to_hub={repo_id}: the Hub does not accept this machine's token "
                          f"({type(err).__name__}); log in with `hf auth login` or set HF_TOKEN.") from None


def push(folder: Path, repo_id: str) -> str:
    """Create the repo if needed and upload the folder in one commit; returns the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload model exported by lft")
    log.info("Uploaded %s to %s", folder, commit.commit_url)
    return commit.commit_url
