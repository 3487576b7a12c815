"""The six programs of PEERS.md (valid LMQL and valid lmq), shared by the benchmarks."""

PROGRAMS = {
    "1 free 48 tokens": '''argmax
    "Write one sentence about the history of Paris.[X]" where len(TOKENS(X)) == 48
''',
    "2 choice": '''argmax
    "Review: I loved it.\\nSentiment:[S]" where S in [" positive", " negative", " neutral"]
''',
    "3 INT": '''argmax
    "How many legs does a spider have? Answer:[N]" where INT(N) and len(TOKENS(N)) < 6
''',
    "4 REGEX date": '''argmax
    "When did the Berlin wall fall? Give the date as YYYY-MM-DD: [D]" where REGEX(D, r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
''',
    "5 three holes": '''argmax
    "Name a fruit:[A]\\nName a colour:[B]\\nName a city:[C]" where STOPS_AT(A, "\\n") and STOPS_AT(B, "\\n") and STOPS_AT(C, "\\n") and len(TOKENS(A)) < 8 and len(TOKENS(B)) < 8 and len(TOKENS(C)) < 8
''',
    "6 loop of five holes": '''argmax
    for i in range(5):
        "- item {i}:[IT]\\n" where STOPS_AT(IT, "\\n") and len(TOKENS(IT)) < 10
''',
}

# LMQL 0.7.3 on the same model and machine (PEERS.md): wall s, forward calls, tokens
# through the model, tokens in the final sequence.
LMQL = {
    "1 free 48 tokens": (3.94, 48, 57, 58),
    "2 choice": (0.36, 16, 26, 12),
    "3 INT": (1.28, 15, 48, 12),
    "4 REGEX date": (2.60, 48, 121, 31),
    "5 three holes": (1.78, 21, 51, 18),
    "6 loop of five holes": (3.64, 45, 190, 60),
}
