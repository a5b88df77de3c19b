"""One process's serving machinery: served models, decoder pool, batcher, device workers and the result cache."""
