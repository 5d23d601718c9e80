"""Training on TRL: the cold start (SFTTrainer) and the tug-of-war phases (GRPOTrainer)."""
