//! The named choices of a recipe (`pooling = "mean"`, `method = "odl"`, …): serde and
//! clap spell them the same way, and each converts to the stage's or kernel's own type.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// How a word's activation is made from its tokens'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PoolingSetting {
    /// Mean of the word's tokens.
    Mean,
    /// The word's last token.
    Last,
}

/// The haemodynamic response of the regressors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HrfSetting {
    /// SPM canonical HRF.
    Spm,
    /// Glover HRF.
    Glover,
    /// Finite impulse response at the FIR delays (one regressor per delay).
    Fir,
}

/// The basis method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MethodSetting {
    /// Online dictionary learning (sparse codes).
    Odl,
    /// Incremental PCA (dense scores; sub-group = dominant component).
    Pca,
}

/// The lasso solver of the codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LassoSetting {
    /// Coordinate descent on the Gram matrix.
    Cd,
    /// LARS-lasso homotopy.
    Lars,
}

/// The subject-level β of the group test (see `kernels::estimators`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EstimatorSetting {
    /// OLS β of all atoms in one design.
    Ols,
    /// Ridge β at each voxel's cross-validated α.
    Ridge,
    /// Each atom's β alone with the nuisance columns.
    Marginal,
}

impl EstimatorSetting {
    pub fn is_ols(&self) -> bool {
        *self == EstimatorSetting::Ols
    }
}

/// The settings print as they are written in a recipe (`odl`, `lars`, …).
macro_rules! display_as_written {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let v = self.to_possible_value().expect("no skipped variants");
                f.write_str(v.get_name())
            }
        }
    )*};
}
display_as_written!(PoolingSetting, HrfSetting, MethodSetting, LassoSetting, EstimatorSetting);

impl From<crate::kernels::estimators::Estimator> for EstimatorSetting {
    fn from(e: crate::kernels::estimators::Estimator) -> Self {
        use crate::kernels::estimators::Estimator;
        match e {
            Estimator::Ols => Self::Ols,
            Estimator::Ridge => Self::Ridge,
            Estimator::Marginal => Self::Marginal,
        }
    }
}

impl From<EstimatorSetting> for crate::kernels::estimators::Estimator {
    fn from(e: EstimatorSetting) -> Self {
        match e {
            EstimatorSetting::Ols => Self::Ols,
            EstimatorSetting::Ridge => Self::Ridge,
            EstimatorSetting::Marginal => Self::Marginal,
        }
    }
}

impl From<PoolingSetting> for crate::model::extract::Pooling {
    fn from(p: PoolingSetting) -> Self {
        match p {
            PoolingSetting::Mean => Self::Mean,
            PoolingSetting::Last => Self::Last,
        }
    }
}

impl From<LassoSetting> for crate::kernels::lasso::LassoAlgorithm {
    fn from(l: LassoSetting) -> Self {
        match l {
            LassoSetting::Cd => Self::CoordinateDescent,
            LassoSetting::Lars => Self::Lars,
        }
    }
}

impl From<MethodSetting> for crate::stages::basis::Method {
    fn from(m: MethodSetting) -> Self {
        match m {
            MethodSetting::Odl => Self::Odl,
            MethodSetting::Pca => Self::Pca,
        }
    }
}

impl HrfSetting {
    /// The kernel's HRF model (FIR at `delays`).
    pub fn model(self, delays: &[usize]) -> crate::kernels::hrf::HrfModel {
        use crate::kernels::hrf::HrfModel;
        match self {
            HrfSetting::Spm => HrfModel::Spm,
            HrfSetting::Glover => HrfModel::Glover,
            HrfSetting::Fir => HrfModel::Fir {
                delays: delays.to_vec(),
            },
        }
    }
}

