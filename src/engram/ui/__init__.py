"""The memory browser (`engram ui`): a local web page to see and correct what Engram remembers."""
