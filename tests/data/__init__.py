from keras_v4d.records.sampling import VideoSampling


def unit_sampling(units, frames_per_unit, stride, crop, short_side, crops=3):
    """A ``VideoSampling`` of ``units`` units and ``crop``² crops in training and evaluation alike
    (``crops`` test views), as the tests' small videos need."""
    return VideoSampling(train_units=units, frames_per_unit=frames_per_unit, stride=stride, crop_size=crop,
                         short_side=short_side, test_num_units=units, test_crop_size=crop, test_num_crops=crops)
