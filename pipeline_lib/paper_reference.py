"""Numbers printed in the papers we reproduce, kept as data so that reports can cite them.

He, Henderson & Pugeault (2025), "Generative Fields: Uncovering Hierarchical Feature Control
for StyleGAN via Inverted Receptive Fields".
"""

PAPER_CITATION = (
    "Z. He, P. Henderson, N. Pugeault. Generative Fields: Uncovering Hierarchical Feature "
    "Control for StyleGAN via Inverted Receptive Fields. 2025."
)

# Appendix Table 1: generative field (pixels, one side) of each conv layer of the FFHQ-256
# paper256 generator. Eq. 1 gives 507 for conv0; the paper prints 506.
PAPER256_GENERATIVE_FIELDS = {
    "conv0": 506,
    "conv1": 379,
    "conv2": 251,
    "conv3": 187,
    "conv4": 123,
    "conv5": 91,
    "conv6": 59,
    "conv7": 43,
    "conv8": 27,
    "conv9": 19,
    "conv10": 11,
    "conv11": 7,
    "conv12": 3,
}
