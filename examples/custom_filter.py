"""A caption filter plugin: `vila2 --plugin examples/custom_filter.py caption ...`."""

import vila2


@vila2.hookimpl
def register_filters(register):
    register(vila2.Filter("no_stock_words", description="Drop captions that read like ad copy.",
                          check=lambda sample, text: not {"stock", "download"} & set(text.lower().split())))
