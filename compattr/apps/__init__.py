"""Applications built on the pipeline: question sets, models, figures, reports and the CLI.

:mod:`~compattr.apps.tasks`
    Multiple-choice question sets (capitals, continents, JSONL, datasets), their accuracy under
    head masks, and plan comparisons at counted model calls.
:mod:`~compattr.apps.models`
    Loading models: hub ids, local folders, GGUF files and the offline SmolLM2 asset.
:mod:`~compattr.apps.plots`
    Figures and HTML views of a spectrum.
:mod:`~compattr.apps.report`
    Markdown tables and the files an explanation or a set of plans is written to.
:mod:`~compattr.apps.circuit`
    The circuit view: the strongest interactions as a layer-ordered graph (PNG or HTML).
:mod:`~compattr.apps.export`
    Interaction values in shapiq's ``InteractionValues`` format (JSON, or the object).
:mod:`~compattr.apps.stats`
    Score intervals of accuracies, and of their paired differences, for methods compared on
    the same questions.
:mod:`~compattr.apps.arguments`
    Layer ranges and kept sizes as the command line spells them.
:mod:`~compattr.apps.cli`
    The ``compattr`` command (``explain`` and ``prune``).

The package imports none of them itself: :mod:`compattr.explain` uses the plots, and the CLI
uses :func:`compattr.explain`, so each module is imported where it is needed.
"""
