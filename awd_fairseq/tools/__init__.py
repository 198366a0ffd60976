"""Tooling the scripts in scripts/ build on: converters, text preparation and other helpers that
run around fairseq's command-line tools rather than inside them. The plugin itself (awd_fairseq's
tasks, models, modules, criterions and optimizers, the package fairseq loads with
`--user-dir awd_fairseq`) never imports it; modules here may import the plugin.
"""
