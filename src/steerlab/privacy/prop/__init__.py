"""PRoP, the keyed (unsealed) mode: a user's key transforms chosen linear layers (keyed.py), trained so the right key
gives the user's behaviour and no key / a wrong key the base's (training.py); research variants, comparison
baselines, and a keyed steering actor (online_keyed.py). Its behaviour is recoverable from the weights by the
attack suite (privacy/attacks): use the sealed mode for anything that leaves your hands (docs/privacy.md)."""
