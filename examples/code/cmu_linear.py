"""A linear layer in the CMU style: W in x out, b a 1 x out row, and dW and db stored as batch means.
Against `linear` (W out x in, b a vector, batch sums) the layout is found and named (W transposed, db a
1 x out row); the batch mean is the course's convention, to declare: declared, it is verified; undeclared, the
report says "your dW is the batch mean; the derivation's is the sum"."""

# check: Linear --against linear --convention dW=mean --convention db=mean
# expect: status verified
# expect: dx verified
# expect: dW verified
# expect: db verified
# expect: note: your code holds W as I x J (in x out)
# expect: note: db comes back as 1 x J; the derivation's is J

# check: Linear --against linear
# expect: status wrong
# expect: dx verified
# expect: dW wrong batch-mean
# expect: db wrong batch-mean
# expect: note: your dW is the batch mean; the derivation's is the sum

import numpy as np


class Linear:
    def __init__(self, in_feature, out_feature):
        self.W = np.random.randn(in_feature, out_feature)
        self.b = np.zeros((1, out_feature))
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, delta):
        batch_size = delta.shape[0]
        self.dW = self.x.T @ delta / batch_size
        self.db = delta.sum(axis=0, keepdims=True) / batch_size
        return delta @ self.W.T
