"""The Kopf operator: thin handlers around a pure rollout state machine."""
