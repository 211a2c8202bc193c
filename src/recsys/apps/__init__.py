"""Applications on top of the pipeline: the end-to-end demo and its report, the replay producer,
the recommendations web page and the recommend command."""
