"""The metrics' default settings, in one place (the metric functions, the API, the config and the CLI use them).

Values as the paper's code: prdc's k and subsample cap (also FLS's cap), the IS splits and KD's subsets.
"""

#: k of prdc and realism (the k-th nearest neighbour, self excluded, sets each ball's radius).
NEAREST_K = 5
#: prdc (both sets) and FLS subsample cap.
REDUCED_N = 10000
#: Inception-score splits.
IS_SPLITS = 10
#: KD subset size and number of subsets.
KD_SUBSET_SIZE = 1000
KD_NUM_SUBSETS = 100
