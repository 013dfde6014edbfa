"""qs4d.apps: thin command-line apps over the runtime (kws, ecg, ecg-report)."""
