"""The menagerie harness: registry, timers, statistics, accuracy, ceilings, results, CLI."""
