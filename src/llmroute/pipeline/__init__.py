"""The request pipeline: the stages around a request, the attempt driver, the executor
that runs every operation, and the stream objects it hands back."""
