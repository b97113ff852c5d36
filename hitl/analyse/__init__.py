"""The `report` stage's figures: agreement statistics, readings in words, disagreements."""
