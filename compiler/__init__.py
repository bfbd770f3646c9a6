"""The compiler: a format spec in, a pipeline of batch passes out.

Nothing in this package touches the terminal; errors travel as values with a location (`dsc.compiler.errors`).
"""
