#pragma once
/** @file Errors reported by loading, preparing and the apps. `process` never throws. */
#include <stdexcept>
#include <string>

namespace ssm {

/** Base of every error the library throws; the message says what is wrong and where, for a user to act on. */
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/** A model file that is malformed: the message names the file, the tensor (if any) and the fault. */
class FormatError : public Error {
public:
    using Error::Error;
};

/** A model config that is well formed but asks for something we cannot run (unknown layer, bad hyper-parameter). */
class ConfigError : public Error {
public:
    using Error::Error;
};

/** A call made in the wrong state or with arguments that violate its contract (e.g. wrong sample rate). */
class UsageError : public Error {
public:
    using Error::Error;
};

}  // namespace ssm
