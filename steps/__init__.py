"""One module per DVC stage: parse paths, load typed params, call qslaw, write outs."""
