"""Off-policy evaluation: estimators, the Open Bandit Dataset reader, replay. No Django imports."""
