"""`dsc generate`: self-instruct data generation (Stanford Alpaca's recipe) against an OpenAI-compatible endpoint.

spec (the `generate:` YAML) -> encoding (prompts out, candidates back) -> filters -> novelty -> output lines, with
the client sending requests and the journal making a killed run resumable; run.py drives them.
"""
