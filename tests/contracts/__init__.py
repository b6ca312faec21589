"""One reusable test suite per stage Protocol (design rule 7), as mixins in the style of haystack's
document-store test mixins: a concrete ``Test...`` class in the stage's test folder inherits a suite and
says how to build its implementation; pytest collects the suite's tests on that class.

Protocol (``*.types``)   suite (``tests.contracts.*``)         implementations run in
retrieval Embedder       embedder.EmbedderContract             tests/retrieval/test_embedder_contract.py
retrieval VectorIndex    vector_index.VectorIndexContract      tests/retrieval/test_vector_index_contract.py
ingest Parser            parser.ParserContract (+Refusing...)  tests/ingest/test_parser_contract.py
ingest Scrubber          scrubber.ScrubberContract             tests/ingest/test_scrubber_contract.py
llm Generator            generator.GeneratorContract           tests/llm/test_generator_contract.py

Each of those files also checks that every implementation in its registry has a contract class, so a new
implementation cannot skip the suite. The suites' names do not start with ``Test``: they are collected
only through a concrete class.
"""
