#pragma once
/** @file The whole public C++ API of ssmstream. */
#include "ssmstream/batch.hpp"
#include "ssmstream/checkpoint.hpp"
#include "ssmstream/error.hpp"
#include "ssmstream/filters.hpp"
#include "ssmstream/hippo.hpp"
#include "ssmstream/model.hpp"
#include "ssmstream/stream.hpp"
#include "ssmstream/tensor_file.hpp"
#include "ssmstream/version.hpp"
