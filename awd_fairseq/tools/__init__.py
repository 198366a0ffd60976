"""What the scripts build on, outside the plugin: recipes written as commands, the comparison,
tuning of the cache pointer and of dynamic evaluation, corpus preparation, importing fastai's
pretrained language models, reading fairseq's logs and the benchmarks' reference loops. The
plugin (tasks, models, criterions, optim, modules) never imports this package; it imports the
plugin."""
