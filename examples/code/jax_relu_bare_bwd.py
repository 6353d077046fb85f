"""A ReLU as jax.custom_vjp whose bwd returns the gradient bare, not as a 1-tuple: jax.vjp refuses it
("Custom VJP bwd rule must produce a tuple"), so the check finds it (kind raised), as training would."""

# check: relu --against relu
# expect: status wrong
# expect: forward pass
# expect: dx wrong raised
# expect: note: not a tuple of 1

import jax
import jax.numpy as jnp


@jax.custom_vjp
def relu(x):
    return jnp.maximum(x, 0.0)


def relu_fwd(x):
    return relu(x), x


def relu_bwd(x, dy):
    return dy * (x > 0)


relu.defvjp(relu_fwd, relu_bwd)
