"""The original Keras models, timed as the reference for `xdn.bench`.

Layer for layer the seed notebooks' autoencoder and VAE (the VAE trained
with the TensorFlow CVAE tutorial's Monte-Carlo ELBO in a GradientTape loop)
and a Keras U-Net like `xdn.models.UNet` (BatchNorm, strided-conv down,
2x2 transposed-conv up, residual) at the depth and width of the xdn config
it is compared with. They run on TensorFlow (graph mode, no XLA, as the
notebooks did), never in xdn itself.
"""

import os
from typing import Callable

import numpy as np

# Keras 3 must use TensorFlow here; the JAX backend would time JAX again.
os.environ['KERAS_BACKEND'] = 'tensorflow'

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position
from keras import layers  # pylint: disable=g-import-not-at-top,wrong-import-position

MODELS = ('autoencoder', 'vae', 'unet')


def seed_encoder(out_dim: int) -> keras.Sequential:
  """Conv32 s2 -> Conv64 s2 -> BatchNorm -> Flatten -> Dense(out_dim)."""
  return keras.Sequential([
      keras.Input((64, 64, 1)),
      layers.Conv2D(32, 3, strides=2, activation='relu'),
      layers.Conv2D(64, 3, strides=2, activation='relu'),
      layers.BatchNormalization(),
      layers.Flatten(),
      layers.Dense(out_dim),
  ])


def seed_decoder(latent_dim: int) -> keras.Sequential:
  """Dense to 8x8x32, then ConvT64 s4 -> ConvT32 s2 -> ConvT1 s1 (linear)."""
  return keras.Sequential([
      keras.Input((latent_dim,)),
      layers.Dense(8 * 8 * 32, activation='relu'),
      layers.Reshape((8, 8, 32)),
      layers.Conv2DTranspose(64, 3, strides=4, padding='same',
                             activation='relu'),
      layers.Conv2DTranspose(32, 3, strides=2, padding='same',
                             activation='relu'),
      layers.Conv2DTranspose(1, 3, strides=1, padding='same'),
  ])


def autoencoder(latent_dim: int = 64) -> keras.Model:
  """The seed autoencoder (1,111,105 parameters), compiled with Adam + MSE."""
  model = keras.Sequential([seed_encoder(latent_dim),
                            seed_decoder(latent_dim)])
  model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='mse',
                jit_compile=False)
  return model


def unet(depth: int = 4, base_width: int = 32) -> keras.Model:
  """`xdn.models.UNet` defaults: BatchNorm, strided-conv down, 2x2 up, residual."""
  inputs = keras.Input((None, None, 1))

  def block(y, width):
    for _ in range(2):
      y = layers.Conv2D(width, 3, padding='same', use_bias=False)(y)
      y = layers.ReLU()(layers.BatchNormalization(momentum=0.9,
                                                  epsilon=1e-5)(y))
    return y

  y, skips = inputs, []
  for level in range(depth):
    y = block(y, base_width * 2**level)
    skips.append(y)
    y = layers.Conv2D(base_width * 2**level, 3, strides=2, padding='same')(y)
  y = block(y, base_width * 2**depth)
  for level in reversed(range(depth)):
    y = layers.Conv2DTranspose(base_width * 2**level, 2, strides=2)(y)
    y = block(layers.Concatenate()([y, skips[level]]), base_width * 2**level)
  outputs = inputs - layers.Conv2D(1, 1)(y)
  model = keras.Model(inputs, outputs)
  model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='mse',
                jit_compile=False)
  return model


def _log_normal_pdf(sample, mean, logvar):
  log2pi = tf.math.log(2. * np.pi)
  return tf.reduce_sum(
      -.5 * ((sample - mean)**2. * tf.exp(-logvar) + logvar + log2pi), axis=1)


def vae_train_step(latent_dim: int = 64) -> Callable[[tf.Tensor], tf.Tensor]:
  """The seed VAE's train step (the TF CVAE tutorial's), as a tf.function."""
  encoder, decoder = seed_encoder(2 * latent_dim), seed_decoder(latent_dim)
  optimizer = keras.optimizers.Adam(1e-3)
  variables = encoder.trainable_variables + decoder.trainable_variables

  @tf.function(jit_compile=False)
  def train_step(x):
    with tf.GradientTape() as tape:
      mean, logvar = tf.split(encoder(x, training=True), 2, axis=1)
      eps = tf.random.normal(tf.shape(mean))
      z = eps * tf.exp(logvar * .5) + mean
      x_logit = decoder(z, training=True)
      cross_ent = tf.nn.sigmoid_cross_entropy_with_logits(logits=x_logit,
                                                          labels=x)
      logpx_z = -tf.reduce_sum(cross_ent, axis=[1, 2, 3])
      logpz = _log_normal_pdf(z, 0., 0.)
      logqz_x = _log_normal_pdf(z, mean, logvar)
      loss = -tf.reduce_mean(logpx_z + logpz - logqz_x)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  return train_step


def _median_rate(step: Callable[[], object], batch: int, repeats: int,
                 warmup: int) -> float:
  """Images/s of `step` (one batch), median of `repeats` timed calls."""
  from xdn import bench  # pylint: disable=g-import-not-at-top  # No cycle.
  for _ in range(warmup):
    step()
  return bench.median_images_per_second(step, batch, repeats)


def train_images_per_second(name: str, batch: int, size: int = 64, *,
                            repeats: int = 5, warmup: int = 2,
                            unet_depth: int = 4,
                            unet_base_width: int = 32) -> float:
  """Training images/s of the Keras model `name` on [batch, size, size, 1].

  `unet_depth` and `unet_base_width` shape the Keras U-Net like the xdn
  config it is compared with.
  """
  rng = np.random.default_rng(0)
  clean = tf.constant(rng.random((batch, size, size, 1), np.float32))
  noisy = tf.constant(np.clip(clean.numpy() + 0.1 * rng.standard_normal(
      clean.shape, np.float32), 0, 1))
  if name == 'vae':
    train_step = vae_train_step()
    # .numpy() waits for the step, as block_until_ready does in JAX.
    return _median_rate(lambda: train_step(noisy).numpy(), batch, repeats,
                        warmup)
  if name == 'autoencoder':
    model = autoencoder()
  elif name == 'unet':
    model = unet(unet_depth, unet_base_width)
  else:
    raise ValueError(f'no Keras reference for {name!r}; have {MODELS}')
  return _median_rate(lambda: model.train_on_batch(noisy, clean), batch,
                      repeats, warmup)


def parameter_count(name: str) -> int:
  """Parameters (BatchNorm statistics included) of the Keras model."""
  if name == 'vae':
    return (seed_encoder(128).count_params() +
            seed_decoder(64).count_params())
  return {'autoencoder': autoencoder, 'unet': unet}[name]().count_params()
