"""What every domain of the survey app stands on: the one validator for what people send, and hashing."""
