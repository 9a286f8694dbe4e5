"""Meta-controllers: the coupling strength alpha of each neuron or cluster, and evolution.

Neurons without guides have nothing to weigh; the meta-controllers arrive with the guides.
"""
