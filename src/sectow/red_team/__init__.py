"""Red-teaming a deployed model with what a tug-of-war made: `sectow attack` sends the trained attacker's
jailbreaks to any OpenAI-compatible endpoint, judges the replies and reports attack success."""
