"""Each decoder family's prompt template and truncation rule, as token ids."""
