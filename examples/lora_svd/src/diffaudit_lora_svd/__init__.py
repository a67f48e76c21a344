"""diffaudit-lora-svd: an example diffing method for diffaudit, found through the `diffaudit.methods` entry point."""

from diffaudit_lora_svd.method import LoraSVDMethod, LoraSVDParams
from diffaudit_lora_svd.tools import GetSVDTokens

__all__ = ["GetSVDTokens", "LoraSVDMethod", "LoraSVDParams"]
