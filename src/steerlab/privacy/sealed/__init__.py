"""Sealed releases, the private mode: the public base bit for bit plus one AEAD-encrypted part per user (blobs.py),
bound to the base's weights and config, the release and the slot; a part is a LoRA-style adapter (adapters.py) or
an online-RL steering actor (online.py); attack.py runs the attack suite on a release."""
